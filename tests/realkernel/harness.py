"""Helpers shared by the real-kernel tests and tests/realkernel/agreement.py: boot, replay, compare."""

from __future__ import annotations

import re
import shutil
from collections import Counter
from collections.abc import Sequence

from tests.helpers import console_section, has_sections
from tests.realkernel.capture import capture
from vmapsim import layouts, procfs, profiles, simulate, trace
from vmapsim.loader import AllocationRecord, Request, Result, for_kernel
from vmapsim.loader.costs import QEMU_TCG, CostModel
from vmapsim.modules import Catalog
from vmapsim.modules.layout import TEXT_TYPES

#: The modules the sequential captures load, in order (small, no dependencies, in both kernels).
MODULES = ["crypto/ansi_cprng", "crypto/aegis128", "arch/x86/kernel/msr", "block/kyber-iosched", "crypto/af_alg",
           "arch/x86/crypto/sha512-ssse3", "arch/x86/crypto/camellia-x86_64"]  # fmt: skip
CATALOGS = {"6.12": "debian-6.12-amd64", "6.1": "debian-6.1-amd64", "7.3": "debian-7.3-amd64",
            "6.12deb13": "debian13-6.12-amd64", "5.10": "debian-5.10-amd64"}
#: The modules a 5.10 capture loads: the sequential ones of newer kernels had other dependencies there (aes_generic
#: is refused with -ENOENT all the same, after its module memory was allocated: a failed load, traced).
MODULES_5_10 = ["crypto/ansi_cprng", "crypto/aes_generic", "crypto/aegis128", "arch/x86/kernel/msr",
                "block/kyber-iosched", "crypto/af_alg", "crypto/sha512_generic", "arch/x86/crypto/sha512-ssse3",
                "arch/x86/crypto/glue_helper", "arch/x86/crypto/camellia-x86_64"]  # fmt: skip
_CACHE: dict[tuple[object, ...], str] = {}


def layout(version: str) -> layouts.Layout:
    """The layout QEMU's ``-cpu max`` boots a kernel into: 5-level paging where the kernel has it (Debian's
    5.10 is built without ``CONFIG_X86_5LEVEL``)."""
    return layouts.X86_64 if version == "5.10" else layouts.X86_64_LA57


def missing_tools() -> str | None:
    """Why the real-kernel harness cannot run here, or None."""
    for tool in ("qemu-system-x86_64", "gcc", "dpkg-deb", "apt-get"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install qemu-system-x86 gcc)"
    return None


SECTIONS = ("vmallocinfo-start", "trace", "modules")  # what every probe prints before power-off


def boot(version: str, cpus: int = 1, modules: tuple[str, ...] = tuple(MODULES), **kw: object) -> str:
    """The console text of one boot, booted once per session for each set of arguments."""
    key = (version, cpus, modules, tuple(sorted(kw.items())))
    if key not in _CACHE:
        for _ in range(3):  # a console cut short at power-off is booted again, not reported as a model error
            text = capture(version, cpus, list(modules), **kw)  # type: ignore[arg-type]
            if has_sections(text, SECTIONS):
                break
        _CACHE[key] = text
    return _CACHE[key]


def replay(text: str, version: str, cpus: int) -> trace.ReplayReport:
    """Replay a boot's trace on its starting snapshot."""
    snap = procfs.parse_vmallocinfo(console_section(text, "vmallocinfo-start"))
    space = procfs.restore(snap, layout(version), cpus=cpus, profile=profiles.for_version(version))
    return trace.replay(trace.parse_trace(console_section(text, "trace")), space)


def replay_from_boot(text: str, version: str, cpus: int) -> trace.ReplayReport:
    """Replay a boot traced from its first allocation on an empty space (percpu chunks reserved).

    Percpu chunks (pcpu_get_vm_areas) never go through alloc_vmap_area(), so they come from the
    snapshot; everything else, node pools included, is rebuilt by the replay itself.
    """
    snap = procfs.parse_vmallocinfo(console_section(text, "vmallocinfo-start"))
    space = procfs.restore(snap, layout(version), cpus=cpus, profile=profiles.for_version(version),
                           percpu_only=True)  # fmt: skip
    return trace.replay(trace.parse_trace(console_section(text, "trace")), space)


def predict(text: str, version: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]], dict[str, tuple[int, int]]]:
    """Simulate a boot's sequential loads from its snapshot: (kernel, model) (size, vstart) sequences and bases.

    The bases map each module to (kernel text base from /proc/modules, vmapsim's text base).
    """
    snap = procfs.parse_vmallocinfo(console_section(text, "vmallocinfo-start"))
    profile = profiles.for_version(version)
    space = procfs.restore(snap, layout(version), profile=profile)
    events = trace.parse_trace(console_section(text, "trace"))
    kernel = [(e.size, e.vstart) for e in events if e.kind == "alloc" and e.task == "init"]
    loaded = re.findall(r"vmapsim-load (\S+) rc=(-?\d+)", text)
    reqs = [Request(name.split(".ko")[0].replace("-", "_"), after=i - 1 if i else None)
            for i, (name, _) in enumerate(loaded)]  # fmt: skip
    res = simulate(reqs, kernel=version, layout=layout(version), catalog=CATALOGS[version], space=space,
                   load_offset=0, costs=QEMU_TCG)  # fmt: skip
    model = []
    for o in res.outcomes:
        for a in sorted(areas(o.allocations, version), key=lambda a: a.allocated):
            model.append((a.size, space.layout.modules.start if a.region == "modules" else space.layout.vmalloc.start))
    real_bases = {}
    for line in console_section(text, "modules").splitlines():
        if line.strip():
            real_bases[line.split()[0]] = int(line.split()[-1], 16)
    bases = {}
    for o in res.outcomes:
        text_area = next((a for a in o.allocations if a.kind in ("text", "core")), None)
        if o.ret == 0 and text_area is not None and o.module in real_bases:
            bases[o.module] = (real_bases[o.module], text_area.addr)
    return kernel, model, bases


def areas(allocations: Sequence[AllocationRecord], version: str) -> list[AllocationRecord]:
    """The allocations that were vmap areas: on a kernel with the ROX cache, text carves are not."""
    rox = for_kernel(version).rox_cache
    return [a for a in allocations if not (rox and a.kind in TEXT_TYPES)]


def duplicates(text: str) -> tuple[list[int], list[int]]:
    """A duplicate boot's return codes (as -errno) and allocations per caller, both sorted."""
    rets = sorted(-int(e) for _, _, rc, e in re.findall(r"vmapsim-dup (\S+) cpu=(\d+) rc=(-?\d+) errno=(\d+)", text))
    events = trace.parse_trace(console_section(text, "trace"))
    per = Counter(e.pid for e in events if e.kind == "alloc" and e.task == "init" and e.pid != 1)
    callers = len(rets)
    counts = sorted(list(per.values()) + [0] * (callers - len(per)))
    return rets, counts


def model_duplicates(version: str, module: str, n: int, syscall: str) -> Result:
    """The matching pipeline's view of n callers loading ``module`` at once."""
    reqs = [Request(module, cpu=c, syscall="init_module" if syscall == "init" else "finit_module") for c in range(n)]
    return simulate(reqs, kernel=version, cpus=n, catalog=Catalog.builtin(CATALOGS[version]),
                    costs=CostModel(lockstep=True))  # fmt: skip
