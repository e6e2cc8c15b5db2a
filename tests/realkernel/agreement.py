"""Boot the real kernels and print how closely vmapsim agrees with them (the table in docs/fidelity.md).

    python -m tests.realkernel.agreement [--update docs/fidelity.md]

With --update the table between the ``agreement:start``/``agreement:end`` markers is replaced.
"""

from __future__ import annotations

import argparse
import datetime
import re
import sys
from pathlib import Path

from tests.realkernel import harness


def rows() -> list[str]:
    out = ["| check | kernel | CPUs | result |", "|---|---|---:|---|"]
    for version in ("6.12", "6.1"):
        r = harness.replay(harness.boot(version, 1), version, 1)
        out.append(f"| trace replay from a mid-boot snapshot | {version} | 1 | {r.summary()} |")
    r = harness.replay(harness.boot("7.3", 1, modules=MODULES_7_3), "7.3", 1)
    out.append(f"| trace replay from a mid-boot snapshot (execmem) | 7.3 | 1 | {r.summary()} |")
    r = harness.replay(harness.boot("6.12deb13", 1), "6.12deb13", 1)
    out.append(f"| trace replay from a mid-boot snapshot (Debian 13's own build) | 6.12deb13 | 1 | {r.summary()} |")
    for cpus in (2, 4, 8):
        r = harness.replay_from_boot(harness.boot("6.12", cpus, from_boot=True), "6.12", cpus)
        kinds = sorted({f"align {d.event.align}" for d in r.disagreements})
        out.append(f"| trace replay from boot (node pools) | 6.12 | {cpus} | {r.summary()}"
                   f"{'; misses: ' + ', '.join(kinds) if kinds else ''} |")  # fmt: skip
    for version in ("6.12", "6.1", "7.3", "6.12deb13"):
        text = harness.boot(version, modules=MODULES_7_3) if version == "7.3" else harness.boot(version)
        kernel, model, bases = harness.predict(text, version)
        same = sum(k == m for k, m in zip(kernel, model, strict=False))
        base_ok = sum(a == b for a, b in bases.values())
        what = " (ROX cache)" if version == "7.3" else ""
        out.append(f"| loader prediction: allocation sizes and windows, module bases{what} | {version} | 1 | "
                   f"{same}/{len(kernel)} allocations equal ({'all' if model == kernel else 'NOT all'}); "
                   f"{base_ok}/{len(bases)} module bases equal |")  # fmt: skip
    for version, syscall in (("6.1", "finit"), ("6.12", "finit"), ("6.12", "init")):
        text = harness.boot(version, 4, modules=("drivers/md/dm-mod",), dup=4, syscall=syscall)
        rets, counts = harness.duplicates(text)
        model = harness.model_duplicates(version, "dm_mod", 4, syscall)
        mrets = sorted(o.ret for o in model.outcomes)
        mcounts = sorted(len(o.allocations) for o in model.outcomes)
        out.append(f"| 4 concurrent {syscall}_module of dm-mod | {version} | 4 | kernel returns {rets}, "
                   f"allocations per caller {counts}; vmapsim {mrets}, {mcounts} |")  # fmt: skip
    from tests.realkernel import timing
    from vmapsim.loader.costs import QEMU_TCG_SHARED

    for version, syscall in (("6.1", "finit"), ("6.12", "finit")):
        seen = timing.observe(harness.boot(version, 8, modules=("drivers/md/dm-mod",), dup=8, syscall=syscall),
                              version, syscall)  # fmt: skip
        model = timing.predict(seen, QEMU_TCG_SHARED)
        real_allocs = sorted(c.allocations for c in seen.callers)
        out.append(f"| 8 concurrent {syscall}_module of dm-mod, predicted by the 2-4 vCPU calibration | {version} | 8 "
                   f"| kernel allocations per caller {real_allocs}, peak module bytes {seen.peak_modules}; vmapsim "
                   f"{sorted(c.allocations for c in model.callers)}, {model.peak_modules} |")  # fmt: skip
    return out


#: Modules of the 7.3 probe (ansi_cprng and sha512-ssse3 are gone from 7.3's tree).
MODULES_7_3 = ("crypto/aegis128", "arch/x86/kernel/msr", "block/kyber-iosched", "crypto/af_alg",
               "arch/x86/crypto/camellia-x86_64")  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--update", help="a Markdown file whose agreement block to replace")
    args = p.parse_args()
    reason = harness.missing_tools()
    if reason:
        print(f"agreement: {reason}", file=sys.stderr)
        return 2
    table = "\n".join(rows()) + f"\n\n(run {datetime.date.today().isoformat()})\n"
    if args.update:
        path = Path(args.update)
        text = path.read_text()
        block = f"<!-- agreement:start -->\n{table}<!-- agreement:end -->"
        path.write_text(re.sub(r"<!-- agreement:start -->.*<!-- agreement:end -->", lambda _: block, text, flags=re.S))
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
