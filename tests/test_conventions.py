"""One command-line language: every command, one table, the same conventions.

Each row names a command's smallest real invocation and what it offers; every test below runs over
all of them: ``--json`` prints a versioned document on stdout, ``--csv`` rows, ``-o FILE`` writes
exactly what would be printed (``-`` is stdout) and refuses a file it cannot write before any work,
``--bytes`` turns every size into a byte count, and the default text fits 100 columns with no bare
byte count.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import console_section, fake_root
from vmapsim import report
from vmapsim.cli import commands, main

DATA = Path(__file__).parent / "data"


@attrs.frozen
class Command:
    """A command's smallest real invocation and what its output offers."""

    argv: tuple[str, ...]
    json: bool = True
    csv: bool = False
    sizes: bool = True  # prints sizes, so --bytes exists
    statuses: frozenset[int] = frozenset({0})  # replay and lsmod report differences with 1


def _inputs(tmp: Path) -> dict[str, str]:
    """The files the commands read, made in ``tmp``: a probe's snapshot and trace, /proc/modules, a root."""
    text = (DATA / "qemu-6.12-4cpu.txt").read_text()
    (tmp / "snap").write_text(console_section(text, "vmallocinfo-start"))
    (tmp / "trace").write_text(console_section(text, "trace"))
    (tmp / "modules").write_text("Module                  Size  Used by\nloop                   36864  0\n")
    fake_root(tmp / "root")
    return {"tmp": str(tmp), "data": str(DATA)}


#: Every command of ``vmapsim`` (``test_every_command_is_in_the_table`` holds the table to the parser).
COMMANDS = {
    "demo": Command(("demo",)),
    "info": Command(("info",), sizes=False),
    "replay": Command(("replay", "{tmp}/snap", "{tmp}/trace", "--kernel", "6.3", "--cpus", "4"),
                      statuses=frozenset({0, 1})),
    "vmallocinfo": Command(("vmallocinfo", "{tmp}/snap", "--cpus", "4")),
    "lsmod": Command(("lsmod", "{tmp}/modules"), csv=True, statuses=frozenset({0, 1})),
    "scan": Command(("scan", "{data}/modules", "--workers", "1"), csv=True),
    "load": Command(("load", "loop", "--cpus", "2", "--pipeline", "v6.3,v6.4"), csv=True),
    "boot": Command(("boot", "--machine", "qemu-kvm", "--cpus", "4", "--pipeline", "v6.3,v6.5"), csv=True),
    "worst": Command(("worst", "--machine", "qemu-kvm", "--cpus", "2", "--budget", "2"), csv=True),
    "machine capture": Command(("machine", "capture", "--root", "{tmp}/root"), json=False, sizes=False),
    "sweep": Command(("sweep", "--machine", "qemu-kvm", "--cpus", "2", "--seeds", "1", "--pipeline", "v6.3",
                      "--executor", "serial"), csv=True),
    "compare": Command(("compare", "--machine", "qemu-kvm", "--cpus", "2", "--seeds", "1", "--pipeline", "v6.3,v6.4",
                        "--executor", "serial"), csv=True),
}  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return _inputs(tmp_path_factory.mktemp("inputs"))


def _run(capsys: pytest.CaptureFixture[str], c: Command, files: dict[str, str], *extra: str) -> tuple[int, str, str]:
    argv = [a.format(**files) for a in c.argv]
    status = main([*argv, *extra])
    out = capsys.readouterr()
    return status, out.out, out.err


def test_every_command_is_in_the_table() -> None:
    named = {name.removeprefix("vmapsim ") for name, p in commands() if name != "vmapsim" and not _has_children(p)}
    assert named == set(COMMANDS)


def _has_children(p: object) -> bool:
    return bool(getattr(p, "children", {}))


@pytest.mark.parametrize("name", COMMANDS)
def test_the_same_options_mean_the_same_in_every_command(name: str) -> None:
    c = COMMANDS[name]
    parser = dict(commands())[f"vmapsim {name}"]
    options = {s for a in parser._actions for s in a.option_strings}
    assert {"-o", "--output"} <= options
    assert ("--json" in options) == c.json and ("--csv" in options) == c.csv and ("--bytes" in options) == c.sizes
    assert "--jobs" not in options  # worker processes are --workers wherever a command has them


#: A kernel file's lines, which vmapsim prints as the kernel does (its sizes are byte counts by format).
_KERNEL_FORMAT = re.compile(r"^(0x[0-9a-f]+-0x[0-9a-f]+ |\w+:\s+\d+ kB$|\s*[\w -]+\t)")
#: A bare number of five or more digits: a byte count written without a unit (not part of an address).
_BARE = re.compile(r"(?<![\w.+/-])\d{5,}(?![\w.])")


@pytest.mark.parametrize("name", COMMANDS)
def test_the_default_text_fits_100_columns_and_has_no_bare_byte_count(
    name: str, capsys: pytest.CaptureFixture[str], files: dict[str, str]
) -> None:
    c = COMMANDS[name]
    status, out, _ = _run(capsys, c, files)
    assert status in c.statuses and out
    if not c.json:  # the output is a machine file: JSON by definition
        json.loads(out)
        return
    lines = [line for line in out.splitlines() if not _KERNEL_FORMAT.match(line)]
    assert [line for line in lines if len(line) > 100] == []
    if c.sizes:
        assert [line for line in lines if _BARE.search(line)] == []


@pytest.mark.parametrize("name", [n for n, c in COMMANDS.items() if c.json])
def test_json_is_a_versioned_document_on_stdout(
    name: str, capsys: pytest.CaptureFixture[str], files: dict[str, str]
) -> None:
    c = COMMANDS[name]
    status, out, _ = _run(capsys, c, files, "--json")
    doc = json.loads(out)
    assert status in c.statuses and doc["schema"] == f"vmapsim-{name}/{report.SCHEMA_VERSION}"
    assert isinstance(doc["notes"], list)


@pytest.mark.parametrize("name", [n for n, c in COMMANDS.items() if c.csv])
def test_csv_is_rows_on_stdout(name: str, capsys: pytest.CaptureFixture[str], files: dict[str, str]) -> None:
    c = COMMANDS[name]
    status, out, _ = _run(capsys, c, files, "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert status in c.statuses and rows and all(len(r) == len(rows[0]) for r in rows)


@pytest.mark.parametrize("name", COMMANDS)
def test_output_file_holds_exactly_what_would_be_printed(
    name: str, capsys: pytest.CaptureFixture[str], files: dict[str, str], tmp_path: Path
) -> None:
    c = COMMANDS[name]
    form = ("--json",) if c.json else ()
    _, printed, _ = _run(capsys, c, files, *form)
    target = tmp_path / "out.txt"
    status, out, _ = _run(capsys, c, files, *form, "-o", str(target))
    assert status in c.statuses and out == "" and target.read_text() == printed
    assert _run(capsys, c, files, *form, "-o", "-")[1] == printed
    status, out, err = _run(capsys, c, files, *form, "-o", str(tmp_path / "missing" / "out.txt"))
    assert (status, out) == (2, "") and err.count("\n") == 1 and "cannot write" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]  # no partial file left


@pytest.mark.parametrize("name", [n for n, c in COMMANDS.items() if c.sizes])
def test_bytes_prints_byte_counts(name: str, capsys: pytest.CaptureFixture[str], files: dict[str, str]) -> None:
    c = COMMANDS[name]
    human = _run(capsys, c, files)[1]
    raw = _run(capsys, c, files, "--bytes")[1]
    units = re.compile(r"\d (B|KiB|MiB|GiB|TiB|PiB)\b")
    assert units.search(human) and len(units.findall(raw)) < len(units.findall(human))


# --- a command says what it did, and refuses an answer that means nothing -------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        status = main(list(argv))
    except SystemExit as e:  # argparse's own refusals
        status = int(e.code or 0)
    out = capsys.readouterr()
    return status, out.out, out.err


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["boot", "--machine", "{tmp}/nomatch", "--catalog", "debian-6.12-arm64", "--cpus", "2"], "nothing to load"),
        (["boot", "--kmod", "99"], "from 1 to 34"),
        (["sweep", "--kmod", "35"], "a kmod release"),
        (["lsmod", "{tmp}/empty"], "lists no modules"),
        (["lsmod", "/dev/null"], "not a regular file"),
        (["worst", "--layout", "i386", "--cpus", "2", "--budget", "1", "--metric", "peak_modules"],
         "peak_modules means nothing on i386"),
        (["worst", "--cpus", "2", "--budget", "1", "--save", "{tmp}/no/w.json"], "cannot write"),
        (["compare", "--layout", "i386", "--cpus", "2", "--seeds", "1", "--pipeline", "v6.3,v6.4", "--metric",
          "peak_modules"], "modules share the vmalloc window"),
        (["sweep", "--seeds", "1", "--resume", "-"], "standard output is the command's output"),
    ],
)
def test_a_meaningless_answer_is_refused(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "nomatch").write_text("cpu:type:x86,ven0000fam0006mod0055:feature:,0000\n")
    (tmp_path / "empty").write_text("")
    status, out, err = _cli(capsys, *(a.format(tmp=tmp_path) for a in argv))
    errors = [line for line in err.splitlines() if line.startswith("vmapsim: error:")]  # after any notes
    assert (status, out) == (2, "") and len(errors) == 1 and needle in errors[0], err


def test_the_library_refuses_what_the_commands_refuse() -> None:
    from vmapsim import InvalidArgument, Scenario
    from vmapsim.layouts import i386
    from vmapsim.loader import metric_on
    from vmapsim.sweeps import Grid

    for make in (lambda: Scenario("qemu-kvm", kmod=99), lambda: Grid(kmods=(35,)),
                 lambda: metric_on("peak_modules", i386())):  # fmt: skip
        with pytest.raises(InvalidArgument):
            make()
    assert metric_on("peak_vmalloc", i386()).name == "peak_vmalloc"


def test_a_zero_baseline_has_no_ratio_in_text_csv_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["compare", "--machine", "qemu-kvm", "--cpus", "4", "--seeds", "1", "--pipeline", "v6.3,v6.4",
            "--metric", "failed_becoming", "--executor", "serial"]  # fmt: skip
    doc = json.loads(_cli(capsys, *argv, "--json")[1])
    (row,) = doc["rows"]
    assert row["baseline_median"] == 0 < row["median"] and row["ratio"] is None  # 6.3 has no early_mod_check()
    assert any("ratio n/a" in n for n in doc["notes"])
    status, text, err = _cli(capsys, *argv)
    assert status == 0 and text.splitlines()[-1].endswith(" n/a") and "ratio n/a" in err
    (csv_row,) = csv.DictReader(io.StringIO(_cli(capsys, *argv, "--csv")[1]))
    assert csv_row["ratio"] == ""
    ratios = json.loads(_cli(capsys, *argv[:-4], "--executor", "serial", "--json")[1])
    assert not any("ratio n/a" in n for n in ratios["notes"])  # peak_modules: every ratio exists, no note


def test_stats_before_6_4_and_shared_windows_and_schedules_are_said(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    base = ["boot", "--machine", "qemu-kvm", "--cpus", "2", "--pipeline", "v6.3,v6.4"]
    out = _cli(capsys, *base, "--stats", "--kmod", "34", "--wide")[1]
    assert "note: CONFIG_MODULE_STATS came with 6.4 (df3e764d8e5c): v6.3 had no" in out
    assert "CONFIG_MODULE_STATS came with" not in _cli(capsys, *base, "--kmod", "34", "--wide")[1]
    doc = json.loads(_cli(capsys, *base, "--layout", "i386", "--kmod", "34", "--json")[1])
    assert any("modules load in the vmalloc window on i386" in n for n in doc["notes"])
    text = _cli(capsys, *base, "--layout", "i386", "--kmod", "34")[1]
    assert text.count("in vmalloc") == 2 and "peak modules" not in text.split("verdicts:")[1].split("\n\n")[0]
    saved = tmp_path / "worst.json"
    assert _cli(capsys, "worst", "--machine", "qemu-kvm", "--cpus", "2", "--budget", "2", "--kmod", "34",
                "--save", str(saved))[0] == 0  # fmt: skip
    status, out, _ = _cli(capsys, "boot", "--machine", "qemu-kvm", "--cpus", "2", "--pipeline", "v6.3",
                            "--schedule", str(saved), "--wide")  # fmt: skip
    assert status == 0 and f"schedule {saved}" in out.splitlines()[0] and "seed" not in out.splitlines()[0]
    assert "only kmod 30 runs" in out and "kmod 34 (" not in out  # the machine's kmod; worst's was 34: said


# --- the text helpers every command uses -------------------------------------------------------------------------

_WORDS = st.lists(st.text(alphabet="abcdefghij(),:;-%0123456789", min_size=1, max_size=30), min_size=1, max_size=60)


@given(_WORDS, st.integers(40, 120))
def test_wrap_fits_the_width_and_keeps_every_word(words: list[str], width: int) -> None:
    lines = report.wrap(" ".join(words), "note: ", "      ", width=width)
    assert all(len(line) <= width for line in lines)  # no word is longer than a line here
    assert " ".join(lines).split()[1:] == words and lines[0].startswith("note: ")


@given(st.integers(0, 1 << 62))
def test_amount_prints_bytes_in_units_or_raw(n: int) -> None:
    assert report.amount(n, "bytes") == report.human_bytes(n) and report.amount(n, "bytes", raw=True) == str(n)
    assert not _BARE.search(report.amount(n, "bytes"))  # never a bare byte count


@pytest.mark.parametrize("argv", [["load", "loop", "--cpus", "2", "--kernel", "6.3", "--pipeline", "kread-dedup"],
                                  ["boot", "--machine", "kdevops", "--cpus", "2", "--pipeline", "v6.4,v6.5"],
                                  ["vmallocinfo", "{data}/crash-kmem-v.txt"]])  # fmt: skip
def test_every_note_goes_to_stderr_once_whatever_the_output_and_into_the_json(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [a.format(data=DATA) for a in argv]
    said: dict[tuple[str, ...], list[str]] = {}
    for form in ((), ("--json",), ("--csv",)) if argv[0] != "vmallocinfo" else ((), ("--json",)):
        _, out, err = _cli(capsys, *argv, *form)
        notes = [line.removeprefix("vmapsim: note: ") for line in err.splitlines() if line.startswith("vmapsim: note:")]
        assert notes and len(notes) == len(set(notes)), err
        said[form] = notes
        if form == ("--json",):
            assert json.loads(out)["notes"] == notes
    assert all(n == said[()] for n in said.values())
