"""Module scanning and catalogs, held to the reference tables kept in tests/data/reference.

The reference CSVs were made independently from Debian's packages; the scanner and the shipped
catalogs must reproduce them.  tests/data/modules holds small real modules: a plain 6.1 .ko, a signed
6.12 .ko.xz, the same 6.12 module recompressed with zstd and gzip, and an unsigned copy.
"""

from __future__ import annotations

import csv
import io
import json
import lzma
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmapsim import InvalidArgument, ModuleFileError, ParseError
from vmapsim.modules import Catalog, KernelConfig, UnknownModule, read_module
from vmapsim.modules.catalog import CSV_COLUMNS

DATA = Path(__file__).parent / "data"
FIXTURES = DATA / "modules"
REF = {
    "debian-6.1-amd64": "6.1.0-56-amd64",
    "debian-6.12-amd64": "6.12.117+deb12-amd64",
}


def reference(kver: str) -> dict[str, dict[str, str]]:
    text = lzma.decompress((DATA / "reference" / f"{kver}.csv.xz").read_bytes()).decode()
    return {r["name"]: r for r in csv.DictReader(io.StringIO(text))}


def rows(catalog: Catalog) -> dict[str, dict[str, str]]:
    return {r["name"]: r for r in csv.DictReader(io.StringIO(catalog.to_csv()))}


def test_fixture_modules_match_the_reference_rows() -> None:
    cat = Catalog.scan(FIXTURES, jobs=1)
    assert cat.problems == () and len(cat) == 5
    got = rows(cat)
    r61, r612 = reference("6.1.0-56-amd64"), reference("6.12.117+deb12-amd64")
    assert got["irqbypass"] == r61["irqbypass"] | {"path": "irqbypass.ko", "est_allocs": got["irqbypass"]["est_allocs"],
                                                   "est_core_alloc": "12288", "est_init_alloc": "4096"}  # fmt: skip
    assert got["msr"] == r612["msr"] | {"path": "msr.ko.xz"}
    same = [c for c in CSV_COLUMNS if c not in ("name", "path", "compression", "file_size")]
    for variant, compression in (("ansi_cprng_zst", "zst"), ("ansi_cprng_gz", "gz"), ("ansi_cprng_unsigned", "none")):
        assert got[variant]["compression"] == compression
        diff = {c for c in same if got[variant][c] != r612["ansi_cprng"][c]}
        # the unsigned copy lacks its 303-byte signature; nothing else may differ
        assert diff == ({"decompressed_size"} if compression == "none" else set()), (variant, diff)
    assert cat["ansi_cprng_unsigned"].signature_size == 0 and cat["ansi_cprng_zst"].signature_size == 303
    assert cat["irqbypass"].legacy == (16384, 4096)  # the 6.1 module's two module_alloc() sizes


@pytest.mark.parametrize("name", sorted(REF))
def test_shipped_catalogs_reproduce_the_reference_data(name: str) -> None:
    cat = Catalog.builtin(name)
    ref, got = reference(REF[name]), rows(cat)
    assert set(got) == set(ref) and cat.kernel == REF[name]
    for column in CSV_COLUMNS:
        agree = sum(got[n][column] == ref[n][column] for n in ref)
        assert agree >= 0.99 * len(ref), (column, agree, len(ref))
    mismatched = [(n, c) for n in ref for c in CSV_COLUMNS if got[n][c] != ref[n][c]]
    assert mismatched == []  # every module, every column: nothing left to explain


def test_published_lsmod_sizes() -> None:
    c61, c612 = Catalog.builtin("debian-6.1-amd64"), Catalog.builtin("debian-6.12-amd64")
    for name, size in [("kvm_intel", 380928), ("kvm", 1146880), ("intel_cstate", 20480), ("loop", 32768),
                       ("nf_conntrack", 188416)]:  # fmt: skip
        assert c61[name].legacy[0] == size, name
    assert c612["kvm_intel"].core_size == 417792 and c612["irqbypass"].core_size == 12288
    assert c61.generation == "module_layout" and c612.generation == "module_memory"
    assert c612["kvm_intel"].allocations("module_memory") == (
        ("text", 225280), ("data", 69632), ("rodata", 106496), ("ro_after_init", 16384), ("init_text", 4096),
        ("init_data", 57344),
    )  # fmt: skip
    with pytest.raises(InvalidArgument):
        c612["kvm"].allocations("v6.4")


def _depmod(kver: str) -> dict[str, list[str]]:
    deps = {}
    for line in lzma.decompress((DATA / "reference" / f"modules.dep-{kver}.xz").read_bytes()).decode().splitlines():
        mod, _, rest = line.partition(":")
        name = lambda p: Path(p).name.split(".ko")[0].replace("-", "_")  # noqa: E731
        deps[name(mod)] = [name(p) for p in rest.split()]
    return deps


@pytest.mark.parametrize("name", sorted(REF))
def test_dependency_closure_is_modprobe_order(name: str) -> None:
    cat = Catalog.builtin(name)
    depmod = _depmod(REF[name])
    for mod in cat:
        order = [m.name for m in cat.closure(mod.name)]
        assert order[-1] == mod.name and sorted(order[:-1]) == sorted(depmod[mod.name])
        position = {n: i for i, n in enumerate(order)}
        for m in order:  # every module comes after its own dependencies
            assert all(position[d.replace("-", "_")] < position[m] for d in cat[m].depends)
    assert [m.name for m in cat.closure("kvm_intel")] == ["irqbypass", "kvm", "kvm_intel"]


def test_lookup_errors_are_typed() -> None:
    cat = Catalog.builtin("debian-6.12-amd64")
    assert "kvm-intel" in cat and cat["kvm-intel"].name == "kvm_intel"
    with pytest.raises(UnknownModule, match="'nosuchmod'"):
        cat["nosuchmod"]
    with pytest.raises(InvalidArgument, match="unknown catalog 'debian-9'"):
        Catalog.builtin("debian-9")


# An Intel server with VMX, AES, AVX2, SHA-NI, thermal sensors (features in word*32+bit hex, as in sysfs).
INTEL = ("cpu:type:x86,ven0000fam0006mod008F:feature:,0000,0001,0016,0081,0083,0085,0089,0094,0099,009C,"
         "0125,013D,01C0,01C6")  # fmt: skip


def _percpu_reference(kver: str, modalias: str, acpi: bool) -> list[str]:
    text = lzma.decompress((DATA / "reference" / f"percpu-aliases-{kver}.csv.xz").read_bytes()).decode()
    targets = [modalias] + (["acpi:ACPI0007:", "acpi:LNXCPU:"] if acpi else [])
    import fnmatch

    return sorted(
        {r["name"] for r in csv.DictReader(io.StringIO(text)) for t in targets if fnmatch.fnmatchcase(t, r["alias"])}
    )


@pytest.mark.parametrize("name", sorted(REF))
def test_percpu_modules_for_an_intel_server(name: str) -> None:
    cat = Catalog.builtin(name)
    got = cat.percpu_modules(INTEL)
    assert got == _percpu_reference(REF[name], INTEL, True)
    assert {"kvm_intel", "aesni_intel", "coretemp", "intel_cstate", "sha256_ssse3"} <= set(got)
    assert ("acpi_cpufreq" in got) is (name == "debian-6.1-amd64")  # 6.12 dropped its ACPI0007 alias
    assert "kvm_amd" not in got


def test_alias_matching_uses_kmod_glob_rules() -> None:
    cat = Catalog.builtin("debian-6.12-amd64")
    assert cat.match_alias("pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00") == ["e1000e"]
    assert "virtio_net" in cat.match_alias("virtio:d00000001v00001AF4")
    assert cat.match_alias("nothing:matches") == []


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    cat = Catalog.scan(FIXTURES, jobs=1)
    cat.save(tmp_path / "c.json.xz")
    again = Catalog.load(tmp_path / "c.json.xz")
    assert again.modules == cat.modules and again.config == cat.config and again.kernel == cat.kernel
    (tmp_path / "bad").write_bytes(b"not a catalog")
    for bad in (tmp_path / "bad", tmp_path / "missing"):
        with pytest.raises(InvalidArgument):
            Catalog.load(bad)


def test_a_trees_modules_order_is_kmods_order_for_a_modalias(tmp_path: Path) -> None:
    # libkmod returns a modalias's modules by depmod priority, which follows modules.order (the link order)
    tree = tmp_path / "lib" / "modules" / "6.12.0"
    shutil.copytree(FIXTURES, tree / "kernel")
    (tree / "modules.order").write_text("kernel/msr.ko\nkernel/irqbypass.ko\nkernel/ansi_cprng-gz.ko\n")
    cat = Catalog.scan(tmp_path, jobs=1)
    assert cat.order == ("msr", "irqbypass", "ansi_cprng_gz")
    twin = attrs.evolve(cat, modules={n: attrs.evolve(m, aliases=("x:*",)) for n, m in cat.modules.items()})
    assert twin.match_alias("x:1") == ["msr", "irqbypass", "ansi_cprng_gz", "ansi_cprng_unsigned", "ansi_cprng_zst"]
    cat.save(tmp_path / "c.json.xz")
    assert Catalog.load(tmp_path / "c.json.xz").order == cat.order
    # a catalog saved before the order was kept loads, with none; a bad order is refused
    doc = json.loads(lzma.decompress((tmp_path / "c.json.xz").read_bytes()))
    for order, ok in ((None, True), (["msr", 3], False)):
        if order is None:
            del doc["order"]
        else:
            doc["order"] = order
        (tmp_path / "d.json.xz").write_bytes(lzma.compress(json.dumps(doc).encode()))
        if ok:
            assert Catalog.load(tmp_path / "d.json.xz").order == ()
        else:
            with pytest.raises(InvalidArgument, match="order"):
                Catalog.load(tmp_path / "d.json.xz")


def test_bad_files_are_reported_and_skipped(tmp_path: Path) -> None:
    for f in FIXTURES.iterdir():
        shutil.copy(f, tmp_path)
    good = (FIXTURES / "msr.ko.xz").read_bytes()
    (tmp_path / "trunc.ko.xz").write_bytes(good[: len(good) // 2])
    (tmp_path / "text.ko").write_bytes(b"hello, not ELF")
    (tmp_path / "wrong.ko.zst").write_bytes(good)  # xz data behind a .zst name
    (tmp_path / "empty.ko.gz").write_bytes(b"")
    cat = Catalog.scan(tmp_path, jobs=1)
    assert len(cat) == 5
    reasons = {p.path: p.reason for p in cat.problems}
    assert set(reasons) == {"trunc.ko.xz", "text.ko", "wrong.ko.zst", "empty.ko.gz"}
    assert reasons["text.ko"] == "not an ELF file" and "truncated" in reasons["trunc.ko.xz"]
    assert reasons["wrong.ko.zst"].startswith("not zst data")


def test_missing_or_empty_paths_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="no such directory"):
        Catalog.scan(tmp_path / "nope")
    with pytest.raises(InvalidArgument, match="no module files"):
        Catalog.scan(tmp_path)
    with pytest.raises(ModuleFileError, match="not a module file name"):
        read_module(b"", "x.txt", KernelConfig())


def test_kernel_config_from_a_package_tree(tmp_path: Path) -> None:
    tree = tmp_path / "lib" / "modules" / "6.12.0-test"
    tree.mkdir(parents=True)
    shutil.copy(FIXTURES / "msr.ko.xz", tree)
    (tmp_path / "boot").mkdir()
    (tmp_path / "boot" / "config-6.12.0-test").write_text("CONFIG_STRICT_MODULE_RWX=y\nCONFIG_MODULE_UNLOAD=y\n")
    cat = Catalog.scan(tmp_path, jobs=1)
    assert cat.kernel == "6.12.0-test" and not cat.config.kallsyms_all
    full = Catalog.scan(FIXTURES, jobs=1)
    # without KALLSYMS_ALL only text symbols are kept in the core kallsyms copy
    assert cat["msr"].ksym_core < full["msr"].ksym_core


def _machine(data: bytes, e_machine: int) -> bytes:
    """A plain little-endian .ko with another ``e_machine`` in its ELF header (offset 18)."""
    return data[:18] + e_machine.to_bytes(2, "little") + data[20:]


def test_scan_takes_the_architecture_from_the_modules() -> None:
    arm = Catalog.scan(DATA / "modules-arm64", jobs=1)
    assert arm.config == KernelConfig(arch="arm64")
    assert arm.config_source == "Debian arm64 defaults (no .config given or found)"
    assert (arm["act_simple"].plt_core, arm["act_simple"].plt_init) == (312, 36)  # laid out with arm64's PLTs
    assert arm["act_simple"].memory == Catalog.builtin("debian-6.12-arm64")["act_simple"].memory
    amd = Catalog.scan(FIXTURES, jobs=1, arch="x86_64")
    assert amd.config.arch == "x86_64" and amd.config_source == "Debian amd64 defaults (no .config given or found)"


@pytest.mark.parametrize(
    "tree,options,config,needle",
    [
        ("modules", {"arch": "arm64"}, None,
         "arch arm64 was asked for, but the modules are x86-64 ELF (e.g. ansi-cprng-unsigned.ko)"),
        ("modules-arm64", {"arch": "x86_64"}, None,
         "arch x86_64 was asked for, but the modules are AArch64 ELF (e.g. act_simple.ko.xz)"),
        ("modules-arm64", {"config": KernelConfig()}, None,
         "the given config is an x86_64 config, but the modules are AArch64 ELF"),
        ("modules", {}, "CONFIG_ARM64=y\n", "boot/config-6.12.0 is an arm64 config, but the modules are x86-64 ELF"),
        ("modules", {"arch": "riscv"}, None, "arch='riscv': expected one of x86_64, arm64"),
    ],
)  # fmt: skip
def test_scan_refuses_another_architecture_than_the_modules(
    tmp_path: Path, tree: str, options: dict[str, object], config: str | None, needle: str
) -> None:
    root = DATA / tree
    if config is not None:  # a package tree whose boot/config is another architecture's
        root = tmp_path
        shutil.copytree(DATA / tree, tmp_path / "lib" / "modules" / "6.12.0")
        (tmp_path / "boot").mkdir()
        (tmp_path / "boot" / "config-6.12.0").write_text(config)
    with pytest.raises(InvalidArgument) as e:
        Catalog.scan(root, jobs=1, **options)  # type: ignore[arg-type]
    assert needle in str(e.value)


def test_scan_refuses_modules_it_cannot_lay_out_and_skips_strangers(tmp_path: Path) -> None:
    plain = (FIXTURES / "irqbypass.ko").read_bytes()
    (tmp_path / "riscv.ko").write_bytes(_machine(plain, 243))  # EM_RISCV
    with pytest.raises(InvalidArgument, match=r"the modules are RISC-V ELF \(e\.g\. riscv\.ko\): vmapsim lays out "
                       "x86_64 and arm64 modules only"):  # fmt: skip
        Catalog.scan(tmp_path, jobs=1)
    # the first module decides; one of another architecture in the tree is skipped, as the kernel refuses it
    (tmp_path / "riscv.ko").rename(tmp_path / "z-riscv.ko")
    (tmp_path / "irqbypass.ko").write_bytes(plain)
    shutil.copy(DATA / "modules-arm64" / "act_simple.ko.xz", tmp_path)
    cat = Catalog.scan(tmp_path, jobs=1)
    assert cat.config.arch == "arm64" and list(cat.modules) == ["act_simple"]  # act_simple.ko.xz sorts first
    assert {p.path: p.reason for p in cat.problems} == {
        "irqbypass.ko": "x86-64 ELF, not arm64 (elf_check_arch())",
        "z-riscv.ko": "RISC-V ELF, not arm64 (elf_check_arch())",
    }


def test_scan_cli_takes_the_arch_from_the_modules_and_notes_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    from vmapsim.cli import main

    assert main(["scan", str(DATA / "modules-arm64"), "--workers", "1"]) == 0
    out, err = capsys.readouterr()
    assert "kernel config: Debian arm64 defaults (no .config given or found)" in out and err == ""
    assert main(["scan", str(FIXTURES), "--workers", "1", "--json"]) == 0
    out, err = capsys.readouterr()
    other = "modules of other kernels too (6.1.0-56-amd64): a catalog is one kernel build's"
    assert json.loads(out)["notes"] == [other] and err == f"vmapsim: note: {other}\n"
    assert main(["scan", str(FIXTURES), "--workers", "1"]) == 0
    out, err = capsys.readouterr()
    assert "note" not in out and err == f"vmapsim: note: {other}\n"
    assert main(["scan", str(FIXTURES), "--workers", "1", "--arch", "arm64"]) == 2
    assert capsys.readouterr().err == ("vmapsim: error: arch arm64 was asked for, but the modules are x86-64 ELF "
                                       "(e.g. ansi-cprng-unsigned.ko)\n")  # fmt: skip


def _package_tree(package: str) -> Path:
    cache = Path("/tmp/vmapsim-kernels")
    root = cache / package
    if (root / "lib" / "modules").is_dir():
        return root
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("needs apt-get and dpkg-deb to fetch Debian's kernel package")
    cache.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["apt-get", "download", package], cwd=cache, capture_output=True, text=True, timeout=600)
    debs = sorted(cache.glob(f"{package}_*.deb"))
    if r.returncode or not debs:
        pytest.skip(f"apt-get download {package} failed: {r.stderr.strip()[:200]}")
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(root)], check=True)
    return root


@pytest.mark.parametrize("name", sorted(REF))
def test_scanning_the_real_debian_package_reproduces_the_shipped_catalog(name: str) -> None:
    package = f"linux-image-{REF[name]}"
    cat = Catalog.scan(_package_tree(package))
    assert cat.problems == ()
    shipped = Catalog.builtin(name)
    assert cat.modules == shipped.modules and cat.config == shipped.config and cat.kernel == shipped.kernel
    assert cat.order == shipped.order  # the package's modules.order


def _readelf_plts(path: Path) -> tuple[int, int]:
    """PLT entries the arm64 loader needs, counted independently from binutils' readelf output."""
    raw = Path("/tmp") / f"vmapsim-{path.stem}"
    raw.write_bytes(lzma.decompress(path.read_bytes()))

    def readelf(flag: str) -> list[str]:
        out = subprocess.run(["readelf", flag, str(raw)], capture_output=True, text=True, check=True)
        return out.stdout.splitlines()

    sections = {}
    for line in readelf("-SW"):
        m = re.match(r"\s*\[\s*(\d+)\]\s+(\S+)\s+\S+\s+\S+\s+\S+\s+\S+\s+\S+\s+(\S*)", line)
        if m:
            sections[m.group(2)] = (int(m.group(1)), "X" in m.group(3))
    ndx = {}
    for line in readelf("-sW"):
        parts = line.split()
        if len(parts) >= 7 and parts[0].rstrip(":").isdigit():
            ndx[int(parts[0].rstrip(":"))] = parts[6]
    counts = [0, 0]
    for block in "\n".join(readelf("-rW")).split("Relocation section '")[1:]:
        target = block.split("'")[0].removeprefix(".rela")
        if not sections.get(target, (0, False))[1]:
            continue
        seen = set()
        for line in block.splitlines()[2:]:
            parts = line.split()
            if len(parts) < 4 or parts[2] not in ("R_AARCH64_CALL26", "R_AARCH64_JUMP26"):
                continue
            sym, addend = int(parts[1][:8], 16), line.rsplit("+", 1)[-1].strip()
            if ndx[sym] == str(sections[target][0]):
                continue  # a branch within its own section needs no PLT
            key = (parts[2], sym, addend)
            if key not in seen or addend != "0":
                counts[target.startswith(".init")] += 1
            seen.add(key)
    raw.unlink()
    return (counts[0] + 1) * 12, (counts[1] + 1) * 12


@pytest.mark.skipif(shutil.which("readelf") is None, reason="needs binutils' readelf for the independent count")
def test_arm64_plt_sizes_match_an_independent_count() -> None:
    fixture = DATA / "modules-arm64" / "act_simple.ko.xz"
    mod = read_module(fixture.read_bytes(), "act_simple.ko.xz", KernelConfig(arch="arm64"))
    assert (mod.plt_core, mod.plt_init) == _readelf_plts(fixture) == (312, 36)
    with pytest.raises(ModuleFileError, match=r"AArch64 ELF, not x86_64 \(elf_check_arch\(\)\)"):
        read_module(fixture.read_bytes(), "act_simple.ko.xz", KernelConfig())  # never laid out as x86-64's
    shipped = Catalog.builtin("debian-6.12-arm64")["act_simple"]
    assert shipped.path == "kernel/net/sched/act_simple.ko.xz" and shipped.memory == mod.memory
    assert (shipped.plt_core, shipped.plt_init) == (312, 36)


# ------------------------------------------------------------------ a live kernel's /proc/modules


def _proc_modules(capture: str) -> str:
    path = DATA / capture
    raw = path.read_bytes()
    text = (lzma.decompress(raw) if capture.endswith(".xz") else raw).decode()
    return "\n".join(line for line in text.splitlines() if " Live 0x" in line)


@pytest.mark.parametrize(
    "capture,catalog,modules",
    [
        ("qemu-6.1-1cpu.txt", "debian-6.1-amd64", 6),
        ("qemu-5.10-1cpu.txt.xz", "debian-5.10-amd64", 8),
        ("qemu-5.10-8cpu-dup-dm-mod.txt.xz", "debian-5.10-amd64", 1),
        # Debian 11's own coldplug: the layout replay of 5.10's layout_sections() on 56 modules
        ("udev/udev-5.10-kmod28-8cpu.txt.xz", "debian-5.10-amd64", 56),
        ("qemu-6.12-1cpu.txt", "debian-6.12-amd64", 7),
        ("udev/udev-6.12-kmod30-4cpu.txt.xz", "debian-6.12-amd64", 56),
        ("udev/udev-6.12deb13-kmod34-2cpu.txt.xz", "debian13-6.12-amd64", 55),
        # trixie-backports' 7.3.4: .static_call_sites is ro_after_init there (6.16's module_mark_ro_after_init())
        ("udev/udev-7.3-kmod34-2cpu.txt.xz", "debian-7.3-amd64", 45),
        ("udev/udev-7.3-kmod34-16cpu.txt.xz", "debian-7.3-amd64", 45),
    ],
)
def test_catalog_sizes_are_the_live_kernels_proc_modules(capture: str, catalog: str, modules: int) -> None:
    from vmapsim.modules import check_sizes, parse_proc_modules

    checks = check_sizes(Catalog.builtin(catalog), parse_proc_modules(_proc_modules(capture)))
    assert len(checks) == modules and all(c.agrees for c in checks), [c for c in checks if not c.agrees]


#: The 7.3.4 coldplug's modules whose /proc/modules size the catalog missed by a page while .static_call_sites
#: was laid out as writable data (6.15's rule): six gain a MOD_RO_AFTER_INIT page, libata's MOD_DATA loses one.
STATIC_CALL_MODULES = ("irqbypass", "bochs", "drm_client_lib", "drm_shmem_helper", "drm_kms_helper", "failover",
                       "libata")  # fmt: skip


def test_on_7_3_static_call_sites_move_from_data_to_ro_after_init() -> None:
    from vmapsim import simulate
    from vmapsim.loader import Request
    from vmapsim.modules import parse_proc_modules

    cat = Catalog.builtin("debian-7.3-amd64")
    live = {m.name: m.size for m in parse_proc_modules(_proc_modules("udev/udev-7.3-kmod34-2cpu.txt.xz"))}
    for name in STATIC_CALL_MODULES:
        text, data, rodata, ro_after_init = cat[name].memory[:4]
        assert text + data + rodata + ro_after_init == live[name], name  # m_show(): the core memory types
        assert ro_after_init == 4096 and cat[name].ro_after_init > 0, name  # libata's __jump_table shares it
    assert cat["libata"].memory[1] == 200704  # 49 pages of MOD_DATA, not 50
    # loaded one after another, the two without dependencies each make a ro_after_init allocation of their own
    r = simulate([Request("irqbypass"), Request("failover", time=1.0, after=0)], kernel="7.3", catalog=cat)
    kinds = {o.module: [a.kind for a in o.allocations if a.region == "modules" and a.kind != "execmem_chunk"]
             for o in r.outcomes}  # fmt: skip
    assert kinds == {"irqbypass": ["text", "data", "rodata", "ro_after_init", "init_data"],
                     "failover": ["text", "data", "rodata", "ro_after_init", "init_text", "init_data"]}  # fmt: skip


def test_static_call_sites_are_ro_after_init_from_6_16_only() -> None:
    # the fixture irqbypass.ko (6.1's) has a 32-byte .static_call_sites and no other ro-after-init section
    from vmapsim.modules.elf import parse_elf, split_signature
    from vmapsim.modules.layout import kernel_of, layout_module, ro_after_init_sections

    image = parse_elf(split_signature((FIXTURES / "irqbypass.ko").read_bytes())[0], "irqbypass.ko")
    assert kernel_of(image) == (6, 1) and ".static_call_sites" not in ro_after_init_sections((6, 15))
    old, own, new = (layout_module(image, KernelConfig(), kernel=k) for k in ((6, 15), None, (6, 16)))
    assert own == old and old.memory == (4096, 4096, 4096, 0, 0, 4096, 0) and old.ro_after_init == 0
    assert new.memory == (4096, 4096, 4096, 4096, 0, 4096, 0) and new.ro_after_init == 32
    assert new.data == old.data - 32 and new.alloc_total == old.alloc_total


def test_lsmod_output_and_bad_lines() -> None:
    from vmapsim.modules import parse_proc_modules

    mods = parse_proc_modules("Module                  Size  Used by\nkvm_intel             413696  0\n"
                              "kvm                  1388544  1 kvm_intel\n")  # fmt: skip
    assert [(m.name, m.size, m.refcount) for m in mods] == [("kvm_intel", 413696, 0), ("kvm", 1388544, 1)]
    for bad, needle in (("kvm 12 0 - Dead 0x0", "unknown module state"), ("kvm twelve 0 - Live", "size"),
                        ("x\n", "not a /proc/modules line")):  # fmt: skip
        with pytest.raises(ParseError, match=needle):
            parse_proc_modules(bad, source="m")


@given(st.from_regex(r"\A[A-Za-z0-9_-]{1,55}\Z"))
def test_every_name_the_kernel_allows_is_read(name: str) -> None:
    from vmapsim.modules import parse_proc_modules

    assert parse_proc_modules(f"{name} 36864 0 - Live 0x0\n")[0].name == name


def test_names_may_start_with_a_digit_and_nothing_else_is_a_name() -> None:
    from vmapsim.modules import parse_proc_modules

    text = "".join(f"{n} 36864 0 - Live 0x0\n" for n in ("8139too", "3c59x", "3c574_cs", "8250_dw"))
    assert [m.name for m in parse_proc_modules(text)] == ["8139too", "3c59x", "3c574_cs", "8250_dw"]
    for bad in ("lo.op", "lööp", "x" * 56, "٣c59x"):
        with pytest.raises(ParseError, match="not a /proc/modules line"):
            parse_proc_modules(f"{bad} 36864 0 - Live 0x0\n")


def test_check_sizes_reads_the_catalogs_generation_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from vmapsim.modules import check_sizes, parse_proc_modules

    cat = Catalog.builtin("debian-6.12-amd64")
    asked = []
    generation = Catalog.generation
    monkeypatch.setattr(Catalog, "generation", property(lambda c: asked.append(1) or generation.fget(c)))
    loaded = parse_proc_modules("".join(f"{n} 4096 0 - Live 0x0\n" for n in sorted(cat.modules)))
    assert len(check_sizes(cat, loaded)) == len(cat) > 4000 and len(asked) == 1
    with pytest.raises(InvalidArgument, match="loaded="):
        check_sizes(cat, ["loop"])  # type: ignore[list-item]


def test_lsmod_command(tmp_path: Path) -> None:
    import sys

    f = tmp_path / "modules"
    f.write_text(_proc_modules("udev/udev-6.12-kmod30-4cpu.txt.xz"))
    r = subprocess.run([sys.executable, "-m", "vmapsim", "lsmod", str(f), "--json"], capture_output=True, text=True)
    doc = json.loads(r.stdout)
    assert r.returncode == 0 and doc["agree"] == doc["compared"] == 56
    r = subprocess.run([sys.executable, "-m", "vmapsim", "lsmod", str(f), "--catalog", "debian-6.1-amd64"],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 1 and "sizes agree for" in r.stdout and "kvm" in r.stdout


def test_a_bare_directory_takes_its_kernel_from_vermagic(tmp_path: Path) -> None:
    for f in FIXTURES.iterdir():
        if "deb12" in read_module(f.read_bytes(), f.name, KernelConfig()).vermagic:
            shutil.copy(f, tmp_path / f.name)
    cat = Catalog.scan(tmp_path, jobs=1)
    assert cat.kernel == "6.12.117+deb12-amd64" and cat.generation == "module_memory"


def test_every_scan_csv_column_is_documented() -> None:
    page = (Path(__file__).parent.parent / "docs" / "modules.md").read_text()
    rows = [line for line in page.splitlines() if line.startswith("| `")]
    named = [name.strip(" `") for row in rows for name in row.split("|")[1].split(",")]
    assert [c for c in named if c in CSV_COLUMNS] == list(CSV_COLUMNS)  # each once, in the CSV's order


def test_scan_starts_no_more_worker_processes_than_usable_cpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import concurrent.futures

    from vmapsim.modules import scan

    for i in range(64):  # the pool starts from 64 files on
        shutil.copy(FIXTURES / "irqbypass.ko", tmp_path / f"m{i}.ko")
    started: list[int] = []

    class Pool:  # runs in this process, recording how many workers it was asked for
        def __init__(self, workers: int) -> None:
            started.append(workers)

        def __enter__(self) -> Pool:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def map(self, fn: Any, items: Any, chunksize: int = 1) -> Any:
            return map(fn, items)

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", Pool)  # the scan imports it when it starts one
    monkeypatch.setattr(scan, "usable_cpus", lambda: 2)
    Catalog.scan(tmp_path, jobs=1024)
    Catalog.scan(tmp_path)
    assert started == [2, 2]


@pytest.mark.parametrize("name", Catalog.builtins())
def test_a_shipped_catalog_loads_unchecked_as_it_loads_checked(name: str) -> None:
    # The package's own catalogs skip the field-by-field checks a user's file gets (the load time of every
    # command): this is the check they skip, field by field, on every shipped catalog.
    from importlib import resources

    raw = (resources.files("vmapsim") / "data" / f"{name}.json.xz").read_bytes()
    checked = Catalog.from_bytes(raw, source=name)
    fast = Catalog.builtin(name)
    assert fast == checked and fast.order == checked.order and fast.config == checked.config
    assert [attrs.astuple(m) for m in fast] == [attrs.astuple(m) for m in checked]
    assert all(type(v) is type(w) for m, c in zip(fast, checked, strict=True)
               for v, w in zip(attrs.astuple(m, recurse=False), attrs.astuple(c, recurse=False), strict=True))
