"""The kernel version as one input: path, module memory, allocator and messages follow it everywhere."""

from __future__ import annotations

import subprocess
import sys

import attrs
import pytest

from vmapsim import InvalidArgument, layouts, profiles, simulate
from vmapsim.loader import PIPELINES, PROPOSALS, Request, Run, for_kernel
from vmapsim.loader.kernel import EXECMEM_FAILURE
from vmapsim.modules import Catalog

CAT = Catalog.builtin("debian-6.12-amd64")


@pytest.mark.parametrize(
    "version,path,generation,profile,execmem",
    [
        ("6.1", "v6.3", "module_layout", "5.18", False),
        ("6.3.8", "v6.3", "module_layout", "6.3", False),
        ("6.4", "v6.4", "module_memory", "6.3", False),
        ("6.5", "v6.5", "module_memory", "6.5", False),
        ("6.9", "v6.5", "module_memory", "6.9", False),
        ("6.10", "v6.5", "module_memory", "6.9", True),
        ("6.12.117+deb12-amd64", "v6.5", "module_memory", "6.11", True),
    ],
)
def test_a_version_picks_path_generation_allocator_and_execmem(
    version: str, path: str, generation: str, profile: str, execmem: bool
) -> None:
    p = for_kernel(version)
    released = PIPELINES[path]
    assert (p.stages, p.idempotent) == (released.stages, released.idempotent)
    assert (p.generation, p.profile.name, p.execmem) == (generation, profile, execmem)
    assert p.profile is profiles.for_version(version)


@pytest.mark.parametrize("version,profile", [("5.10.0-46-amd64", "5.4"), ("5.15", "5.11"), ("5.16", "5.16")])
def test_before_5_17_finit_module_does_not_decompress_and_refuses_a_compressed_file(version: str, profile: str) -> None:
    p = for_kernel(version)
    assert (p.profile.name, p.generation, p.idempotent, p.early_check, p.decompresses) == (
        profile, "module_layout", False, False, False)
    # the 6.3 path without module_decompress(), behind finit_module()'s flags check
    assert [st.name for st in p.stages] == ["finit_flags"] + [st.name for st in PIPELINES["v6.3"].stages
                                                               if st.name != "decompress"]  # fmt: skip
    assert for_kernel("5.17").decompresses
    r = simulate([Request("loop", syscall="finit_module"), Request("loop", syscall="init_module", after=0)],
                 cpus=1, catalog=CAT, kernel=version)  # fmt: skip
    # -EINVAL before anything is read; kmod's own fallback, init_module(2), loads it
    assert [o.ret for o in r.outcomes] == [-22, 0]
    assert r.outcomes[0].allocations == () and r.outcomes[1].allocations


def test_kmod_31_and_later_decompress_themselves_on_a_kernel_that_does_not() -> None:
    from vmapsim import Scenario

    new, old = (Scenario("qemu-kvm", kernel=k, catalog="debian-6.12-amd64", kmod=34) for k in ("6.12", "5.10"))
    assert (str(new.syscall), str(old.syscall)) == ("finit_module", "init_module")
    assert {str(j.syscall) for j in old.jobs()} == {"init_module"}  # type: ignore[union-attr]


def test_a_run_without_kernel_or_pipeline_runs_its_catalogs_kernel() -> None:
    assert Run(catalog="debian-6.1-amd64").path.name == "6.1"
    assert Run(catalog=CAT).path == for_kernel("6.12")
    # a 6.12 boot runs the 6.9+ allocator with its node pools, not the 6.5 one
    r = simulate([Request("loop", cpu=c) for c in range(4)], cpus=4, catalog=CAT)
    assert r.pipeline == "6.12" and r.space.profile.node_pools and r.space.nr_vmap_nodes == 4


def test_proposals_go_on_top_of_the_kernel_asked_for() -> None:
    p = Run(kernel="6.3", pipeline="kread-dedup").path
    assert p.name == "6.3+kread-dedup" and p.generation == "module_layout" and p.stages[0].dedup == "path"
    # without a kernel, a proposal is the patch on the 6.4 path it was posted against
    assert Run(pipeline="kread-dedup").path is PIPELINES["kread-dedup"]
    for name, proposal in PROPOSALS.items():
        on_612 = for_kernel("6.12", name)
        assert on_612.idempotent and on_612.profile.name == "6.11" and proposal.applies_to(for_kernel("6.12"))


@pytest.mark.parametrize(
    "fields,match",
    [
        ({"kernel": "6.12", "pipeline": "v6.3"}, "disagree: v6.3 is 6.3's own load path"),
        ({"kernel": "6.12", "pipeline": PIPELINES["v6.5"]}, "v6.5 is a whole load path on 6.5"),
        ({"kernel": "6.1", "pipeline": "page-list"}, "existence check"),
        ({"kernel": "7.4"}, "newer than 7.3"),
        ({"kernel": "5.3"}, "profiles start at 5.4"),
        ({"kernel": "six"}, "MAJOR.MINOR"),
        ({"kernel": 6.12}, "string"),
        ({"kernel": "6.12", "pipeline": "no-such"}, "unknown pipeline .no-such."),
    ],
)
def test_conflicting_or_unknown_kernels_are_refused(fields: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        Run(**fields)  # type: ignore[arg-type]


def _small_window() -> layouts.Layout:
    # a 2 MiB module window: the 2.4 MiB core of a KASAN-sized kvm_intel cannot fit, on any kernel
    start = layouts.X86_64.modules.start
    return attrs.evolve(layouts.X86_64, modules=layouts.Region("modules", start, start + (2 << 20)), kaslr=False)


@pytest.mark.parametrize(
    "kernel,message",
    [
        ("6.3", "vmap allocation for size 2498560 failed: use vmalloc=<size> to increase size"),  # module_alloc()
        ("6.9", "vmap allocation for size 2498560 failed: use vmalloc=<size> to increase size"),
        ("6.10", EXECMEM_FAILURE),  # execmem asks with __GFP_NOWARN and prints its own line
        ("6.12", EXECMEM_FAILURE),  # (without execmem, 6.11+ vmalloc would print its vmalloc_node_range line)
    ],
)
def test_a_module_window_miss_prints_what_that_kernel_prints(kernel: str, message: str) -> None:
    big = attrs.evolve(CAT["kvm_intel"], name="big", legacy=(2494464, 311296), memory=(2494464, 0, 0, 0, 311296, 0, 0))
    r = simulate([Request(big)], kernel=kernel, layout=_small_window())
    assert [o.ret for o in r.outcomes] == [-12]
    assert [f.message for f in r.failures] == [message]


def test_cli_kernel_rows_are_each_kernels_path_and_proposals() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "vmapsim", "load", "dm_mod", "--cpus", "4", "--kernel", "6.1,6.12"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    lines = out.splitlines()
    rows = [line.split()[0] for line in lines[3:lines.index("verdicts:")]]  # the table, under the 2-line header
    # page-list needs 6.4's existence check, so 6.1 has no such row
    proposals = ["kread-dedup", "page-list", "exclusive-deny", "concurrency-limit"]
    on_61 = [f"6.1+{p}" for p in proposals if p != "page-list"]
    assert rows == ["6.1", *on_61, "6.12", *(f"6.12+{p}" for p in proposals)]
    bad = subprocess.run([sys.executable, "-m", "vmapsim", "boot", "--kernel", "6.12", "--pipeline", "v6.3"],
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "--kernel 6.12 and --pipeline v6.3 disagree: v6.3 is 6.3's own load path" in bad.stderr


def test_an_enterprise_kernels_base_runs_upstream_and_says_so() -> None:
    from vmapsim import Scenario

    note = profiles.enterprise_note("5.14.0-427.el9.x86_64")
    assert note is not None and "RHEL 9" in note and profiles.enterprise_note("5.15") is None
    assert note in Run(kernel="5.14").notes and note in Scenario("qemu-kvm", kernel="5.14").notes
    assert not any("RHEL" in n for n in Scenario("qemu-kvm", kernel="5.10").notes)
    assert Run(kernel="5.14").path.profile is profiles.LINUX_5_11  # the upstream allocator, not a guess at backports
