"""Every ``vmapsim`` command line shown in README.md and docs/*.md runs, so documented commands cannot rot.

Documented commands are tests
-----------------------------
Each line of a shell code block (```sh, ```shell, ```bash, ```console, or a fence with no language) of README.md and
docs/*.md that invokes ``vmapsim`` is one test case, with the id ``PAGE:LINE``. It runs in this process as
``vmapsim.cli.main(shlex.split(line)[1:])``, in a temporary folder of its own, and must exit 0 (or 1 for ``replay``
and ``lsmod``, whose documented answer to a disagreement is status 1), print something, and write each file it names
with -o/--output, --save, --parquet, --plot, --plot-histograms, --series, --histogram-series or --resume; with the
``--json`` or ``--csv`` switch, what it prints (or writes to ``-o FILE``) must be JSON or CSV. A ``$ `` prompt,
backslash continuations, the comment and the other commands of a pipeline or an ``&&`` chain are taken off; in a
```console block only ``$ `` lines are commands, and ```text blocks (output) are not read. A line that reads a file
an earlier line of the same page writes (``vmapsim worst --save worst.json``, then ``vmapsim boot --schedule
worst.json``) is given that file from the earlier line's run.

Smaller counts for CI: a line that takes more than about 5 s at its documented size ends with the shell
comment ``# test: OPTION VALUE ...`` (after any other comment), and the test runs it with each named option's
value replaced.  Only counts go there (--cpus, --seeds, --budget, --exhaustion), and only options the line
gives::

    vmapsim worst --cpus 255 --kernel 6.3 --budget 100 --save worst.json  # test: --budget 10

A line that cannot run as typed (a placeholder such as FILE, ``$(uname -r)``, a path or a server on the
reader's machine) is listed in :data:`SUBSTITUTES` with the command run in its place on shipped data, or with
the reason it cannot run here.  Such a line that is not listed fails, naming itself, instead of being skipped;
an entry whose line has left the docs fails too.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import io
import json
import re
import shlex
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from vmapsim.cli import commands, main

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: Code-block languages whose lines are shell commands; "" is a fence with no language (docs/sweep.md's).
SHELL_BLOCKS = {"sh", "shell", "bash", "console", ""}
#: An opening fence: its backticks or tildes and its info string ("sh", "{eval-rst}", ...).
FENCE = re.compile(r"^\s*(?P<fence>`{3,}|~{3,})\s*(?P<info>\S*)")
#: What a shell would expand or a reader replace: $(...), `...`, globs, ~, <input, NAME[...] and ... forms,
#: and placeholder words in capitals (FILE, PATH, MODULE).
NOT_AS_TYPED = re.compile(r"[$`<*~\[\]]|\.\.\.|…|(?<![\w=:,.-])[A-Z][A-Z_]+(?![\w-])")
#: The options a ``# test:`` comment may change: counts, which set a run's size and nothing else.
COUNT_OPTIONS = {"--cpus", "--seeds", "--budget", "--exhaustion"}
#: Options whose value is a file the command writes.
FILE_OPTIONS = ("output", "save", "parquet", "plot", "plot_histograms", "series", "histogram_series", "resume")
#: Commands that exit 1 to report a difference (docs/output.md, docs/usage.md, docs/machines.md).
REPORTS_DIFFERENCES = {"replay", "lsmod"}


@dataclass(frozen=True)
class CannotRun:
    """A :data:`SUBSTITUTES` entry for a documented line that has no runnable stand-in here."""

    reason: str


#: Documented lines not runnable as typed (keyed by the command as documented, whitespace collapsed and the
#: comment taken off) and what runs in their place: a command line, where ``{data}`` is tests/data and
#: ``{scheduler}`` the address of a Dask scheduler started for the test, or why none can run.
#: Reviewed by hand: each stand-in keeps the line's command and options and changes only what the reader's
#: machine supplies.
SUBSTITUTES: dict[str, str | CannotRun] = {
    # The reader's own module tree; tests/data/modules is a tree of real modules (each compression, unsigned).
    "vmapsim scan /lib/modules/$(uname -r) --save my-kernel.json.xz --csv -o modules.csv":
        "vmapsim scan {data}/modules --save my-kernel.json.xz --csv -o modules.csv",
    # Trees the block's apt-get download and dpkg-deb lines extract from Debian's packages (the network and
    # ~100 MB each; tests/test_modules.py rebuilds the real catalogs where it can fetch them): the same scan
    # and --save of a shipped tree, amd64's and arm64's.
    "vmapsim scan k61 --save vmapsim/data/debian-6.1-amd64.json.xz":
        "vmapsim scan {data}/modules --save vmapsim/data/debian-6.1-amd64.json.xz",
    "vmapsim scan k612 --save vmapsim/data/debian-6.12-amd64.json.xz":
        "vmapsim scan {data}/modules --save vmapsim/data/debian-6.12-amd64.json.xz",
    "vmapsim scan k612arm --save vmapsim/data/debian-6.12-arm64.json.xz":
        "vmapsim scan {data}/modules-arm64 --save vmapsim/data/debian-6.12-arm64.json.xz",
    "vmapsim scan k73 --save vmapsim/data/debian-7.3-amd64.json.xz":
        "vmapsim scan {data}/modules --save vmapsim/data/debian-7.3-amd64.json.xz",
    # mymachine.txt is cat's copy of the reader's modalias files (the line before it): a QEMU guest's shipped
    # list stands in, and $(nproc) and the kernel's version from uname -r take fixed values.
    'vmapsim boot --machine mymachine.txt --cpus "$(nproc)" --ram 64 --kernel "$(uname -r | cut -d. -f1,2)"':
        "vmapsim boot --machine {data}/qemu-tcg-max-modaliases.txt --cpus 4 --ram 64 --kernel 6.12",
    # kmem-v.txt is crash's 'kmem -v' of the reader's vmcore (the line before it): a sample in crash's layout
    # stands in.
    "vmapsim vmallocinfo kmem-v.txt --cpus 8": "vmapsim vmallocinfo {data}/crash-kmem-v.txt --cpus 8",
    # host:8786 is the reader's Dask scheduler: one started for the test takes its place, and fewer CPUs and
    # seeds keep it quick.
    "vmapsim sweep --cpus 255,448 --kernel 6.3,6.12 --kmod 30,34 --executor dask --scheduler tcp://host:8786":
        "vmapsim sweep --cpus 16,32 --seeds 2 --kernel 6.3,6.12 --kmod 30,34 --executor dask --scheduler {scheduler}",
}  # fmt: skip


@dataclass(frozen=True)
class Documented:
    """One ``vmapsim`` command line of a page's shell block."""

    page: str  #: the page, relative to the repository: "README.md", "docs/sweep.md"
    line: int  #: the line it starts on
    command: str  #: the vmapsim invocation as documented: whitespace collapsed, comment and the chain's rest off
    test_options: str = ""  #: its ``# test:`` comment's options, if it has one

    @property
    def id(self) -> str:
        """The test id, ``PAGE:LINE``."""
        return f"{self.page}:{self.line}"


class NotRunnable(Exception):
    """A documented line the test cannot run: listed as such in SUBSTITUTES (``listed``: a skip with the
    reason), or not runnable as typed and not listed (a failure)."""

    def __init__(self, message: str, *, listed: bool) -> None:
        super().__init__(message)
        self.listed = listed


def shell_parts(text: str) -> tuple[list[str], str]:
    """One logical shell line's commands and its comment.

    Commands are separated by ``|``, ``||``, ``&&``, ``;`` and ``&`` outside quotes and ``$(...)``; an output
    redirection (``> FILE``, ``2>&1``) is dropped with its target, since where the output goes does not change
    what runs.  The comment is what follows an unquoted ``#`` that starts a word.
    """
    parts: list[str] = []
    current: list[str] = []
    quote, depth, redirected, comment = "", 0, False, ""
    i = 0
    while i < len(text):
        ch = text[i]
        step = 2 if ch == "\\" and quote != "'" else 1  # a backslash escapes the next character, except in '...'
        if step == 1:
            if quote:
                quote = "" if ch == quote else quote
            elif ch in "'\"":
                quote = ch
            elif ch in "()":
                depth = depth + 1 if ch == "(" else max(depth - 1, 0)
            elif depth == 0 and ch == "#" and (i == 0 or text[i - 1].isspace()):
                comment = text[i + 1 :]
                break
            elif depth == 0 and ch in "|&;":
                parts.append("".join(current))
                current, redirected = [], False
                i += 2 if text[i : i + 2] in ("||", "&&") else 1
                continue
            elif depth == 0 and ch == ">":
                if current and current[-1].isdigit():  # 2> and 1>: the descriptor belongs to the redirection
                    current.pop()
                redirected = True
                step = 2 if text[i + 1 : i + 2] in (">", "&") else 1
        if not redirected:
            current.append(text[i : i + step])
        i += step
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()], comment.strip()


def commands_in(markdown: str, page: str) -> list[Documented]:
    """Every ``vmapsim`` invocation in the shell code blocks of one Markdown page (see the module's docstring)."""
    found: list[Documented] = []
    fence, language = "", ""
    start, pending = 0, ""  # a line continued with a backslash: where it started, what it holds so far
    for number, line in enumerate(markdown.splitlines(), 1):
        if not fence:
            if opening := FENCE.match(line):
                fence, language = opening["fence"], opening["info"].lower()
            continue
        stripped = line.strip()
        if stripped.startswith(fence) and not stripped.strip(fence[0]):  # the closing fence
            fence, pending = "", ""
            continue
        if language not in SHELL_BLOCKS:
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical, pending = (pending + line).strip(), ""
        if language == "console" and not logical.startswith("$ "):
            continue  # a console block's other lines are the commands' output
        segments, comment = shell_parts(logical.removeprefix("$ "))
        marked = re.search(r"#\s*test:(.*)$", "#" + comment)  # '# test:' may follow another comment
        options = marked.group(1).strip() if marked else ""
        for segment in segments:
            words = segment.split()
            if words[:1] == ["vmapsim"] or (words[:1] in (["python"], ["python3"]) and words[1:3] == ["-m", "vmapsim"]):
                found.append(Documented(page, start, " ".join(words), options))
    return found


def collect() -> list[Documented]:
    """The documented command lines of README.md and docs/*.md, Dask's last.

    A Dask client leaves threads in this process, and vmapsim then runs a boot's simulations in turn instead
    of on forked workers (forking a process with threads is unsafe), which would slow every later boot.
    """
    cases = [c for page in PAGES for c in commands_in(page.read_text(), page.relative_to(ROOT).as_posix())]
    return sorted(cases, key=lambda c: "--executor dask" in str(SUBSTITUTES.get(c.command, c.command)))


CASES = collect()


def with_counts(argv: list[str], options: str) -> list[str]:
    """``argv`` with each ``OPTION VALUE`` of a ``# test:`` comment replacing the value the line gives."""
    words = shlex.split(options)
    if len(words) % 2 or not words:
        raise NotRunnable(f"'# test: {options}': expected OPTION VALUE pairs", listed=False)
    out = list(argv)
    for option, value in zip(words[::2], words[1::2], strict=True):
        if option not in COUNT_OPTIONS:
            raise NotRunnable(f"'# test:' sets {option}: only counts ({', '.join(sorted(COUNT_OPTIONS))})",
                              listed=False)  # fmt: skip
        if option not in out[:-1]:
            raise NotRunnable(f"'# test:' sets {option}, which the line does not give", listed=False)
        out[out.index(option) + 1] = value
    return out


def plan(case: Documented) -> list[str]:
    """The arguments (after ``vmapsim``) the case runs: its substitute's, or the line's with its ``# test:``
    counts.  Raises NotRunnable for a line listed as such, or not runnable as typed and not listed."""
    substitute = SUBSTITUTES.get(case.command)
    if isinstance(substitute, CannotRun):
        raise NotRunnable(f"{case.command}: {substitute.reason}", listed=True)
    if substitute is not None:
        if case.test_options:  # one place says what runs: the substitute
            raise NotRunnable(f"{case.command} has a substitute: put its '# test:' counts there", listed=False)
        words = shlex.split(substitute.replace("{data}", str(DATA)))
    elif shell := NOT_AS_TYPED.search(case.command):
        raise NotRunnable(f"{case.command}: not runnable as typed ({shell[0]!r}): list it in SUBSTITUTES of "
                          "tests/test_docs_commands.py", listed=False)  # fmt: skip
    else:
        words = shlex.split(case.command)
    argv = words[words.index("vmapsim") + 1 :]
    return with_counts(argv, case.test_options) if case.test_options else argv


@functools.cache
def _parsers() -> dict[str, argparse.ArgumentParser]:
    return dict(commands())


def parsed(argv: list[str]) -> argparse.Namespace | None:
    """The options of a command line as its own (sub)command's parser reads them, or None if it refuses them."""
    parsers = _parsers()
    for n in range(len(argv), 0, -1):  # the longest command name first: 'machine capture' before 'machine'
        parser = parsers.get(" ".join(["vmapsim", *argv[:n]]))
        if parser is not None:
            try:
                with contextlib.redirect_stderr(io.StringIO()):  # the run itself reports a refusal
                    return parser.parse_args(argv[n:])
            except SystemExit:
                return None
    return None


def written_files(argv: list[str]) -> set[str]:
    """The files a command line names to write (the values of its FILE_OPTIONS)."""
    options = parsed(argv)
    values = (getattr(options, name, None) for name in FILE_OPTIONS)
    return {v for v in values if isinstance(v, str)}


def producers(case: Documented) -> list[Documented]:
    """The earlier lines of the case's page that write a file the case reads."""
    try:
        reads = set(plan(case))
    except NotRunnable:
        return []
    reads -= written_files(plan(case))  # --resume FILE is both: the case's own
    out = []
    for earlier in CASES:
        if earlier.page == case.page and earlier.line < case.line:
            with contextlib.suppress(NotRunnable):  # an earlier line that cannot run fails on its own
                if written_files(plan(earlier)) & reads:
                    out.append(earlier)
    return out


@dataclass(frozen=True)
class Outcome:
    """One run of ``vmapsim.cli.main``."""

    argv: list[str]
    status: int
    stdout: str
    stderr: str
    cwd: Path


def run_main(argv: list[str], cwd: Path) -> Outcome:
    """``vmapsim.cli.main(argv)`` with ``cwd`` as the working folder (the files it writes go there) and its
    standard output and error captured; argparse's exits (a refused option) give their status."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as e:
            status = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
    return Outcome(argv, status, out.getvalue(), err.getvalue(), cwd)


def last_line(text: str) -> str:
    """The last non-empty line of a command's error output: its one-line error."""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(nothing on stderr)"


class Runner:
    """Runs each documented line once per session, in a folder of its own, so a later line can be given a
    file an earlier one wrote without running the earlier one again."""

    def __init__(self, folders: pytest.TempPathFactory) -> None:
        self._folders = folders
        self._runs: dict[Documented, Outcome] = {}
        self._cluster: Any = None  # a dask.distributed LocalCluster, started when a line needs a scheduler

    def scheduler(self) -> str:
        """The address of a local Dask scheduler with one worker process, started the first time it is asked."""
        if self._cluster is None:
            from distributed import LocalCluster

            self._cluster = LocalCluster(  # type: ignore[no-untyped-call]  # Dask ships no annotations for it
                n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
            )
        return str(self._cluster.scheduler_address)

    def close(self) -> None:
        """Stop the Dask scheduler and its worker, if one was started."""
        if self._cluster is not None:
            self._cluster.close(timeout=30)  # bounded: a Dask shutdown that stalls must not hang the session

    def run(self, case: Documented) -> Outcome:
        """The case's outcome: the files it reads from earlier lines copied in, then main() run once."""
        if case in self._runs:
            return self._runs[case]
        argv = plan(case)
        cwd = self._folders.mktemp(re.sub(r"[^\w.-]+", "-", case.id))
        for earlier in producers(case):
            made = self.run(earlier)
            for name in sorted(written_files(made.argv) & set(argv)):
                if not (made.cwd / name).is_file():
                    pytest.fail(f"{case.id} reads {name}, which {earlier.id} did not write: it exited "
                                f"{made.status}: {last_line(made.stderr)}", pytrace=False)  # fmt: skip
                (cwd / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(made.cwd / name, cwd / name)
        for name in written_files(argv):  # a documented path inside the checkout (vmapsim/data/...) needs its folder
            (cwd / name).parent.mkdir(parents=True, exist_ok=True)
        argv = [a.replace("{scheduler}", self.scheduler()) if "{scheduler}" in a else a for a in argv]
        self._runs[case] = run_main(argv, cwd)
        return self._runs[case]


@pytest.fixture(scope="session")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    """The session's runner of documented lines."""
    r = Runner(tmp_path_factory)
    yield r
    r.close()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_documented_command_runs(case: Documented, runner: Runner) -> None:
    """The line (or its substitute) exits as the docs say, prints, and writes every file it names."""
    try:
        outcome = runner.run(case)
    except NotRunnable as e:
        if e.listed:
            pytest.skip(str(e))
        pytest.fail(f"{case.id}: {e}", pytrace=False)
    shown = shlex.join(["vmapsim", *outcome.argv])
    expected = {0, 1} if outcome.argv[0] in REPORTS_DIFFERENCES else {0}
    if outcome.status not in expected:
        pytest.fail(f"{shown}: exit status {outcome.status}: {last_line(outcome.stderr)}", pytrace=False)
    for name in written_files(outcome.argv):
        path = outcome.cwd / name
        assert path.is_file() and path.stat().st_size > 0, f"{shown} did not write {name}"
    options = parsed(outcome.argv)
    target = getattr(options, "output", None)
    printed = outcome.stdout if target in (None, "-") else (outcome.cwd / target).read_text()
    assert printed.strip(), f"{shown} printed nothing"
    if getattr(options, "json", None) is True:  # the --json switch: one JSON document
        assert isinstance(json.loads(printed), dict), f"{shown}: not a JSON document"
    if getattr(options, "csv", None) is True:  # the --csv switch: a header and rows of the same width
        rows = list(csv.reader(io.StringIO(printed)))
        assert len(rows) > 1 and all(len(r) == len(rows[0]) > 1 for r in rows), f"{shown}: not CSV"


def test_every_substitute_is_still_documented() -> None:
    """A SUBSTITUTES entry whose line has left the docs (or changed) must go: the list stays the reviewed one."""
    documented = {c.command for c in CASES}
    assert CASES and sorted(set(SUBSTITUTES) - documented) == []


SAMPLE = r"""
```sh
pip install . && vmapsim boot   # the quick start
vmapsim sweep --cpus 8-64:8 --seeds 10 \
    --csv -o rows.csv  # slow # test: --cpus 8 --seeds 2
vmapsim boot --json | jq '.data.runs[0]'
vmapsim info > info.txt 2>&1; vmapsim demo --cpus 2
echo "vmapsim boot"
```

```console
$ vmapsim demo
vmapsim: error: this is output
```

```text
vmapsim boot --cpus 9
```

```python
>>> vmapsim.simulate([])
```

```
layer  people: vmapsim boot, worst
vmapsim compare --kernel 6.3,6.4
```
"""


def test_the_collector_reads_shell_blocks_only() -> None:
    """Chains, pipelines, redirections, continuations, prompts and ``# test:`` comments are read as documented;
    output, text and Python blocks and prose inside a fence are not commands."""
    got = [(c.line, c.command, c.test_options) for c in commands_in(SAMPLE, "sample.md")]
    assert got == [
        (3, "vmapsim boot", ""),
        (4, "vmapsim sweep --cpus 8-64:8 --seeds 10 --csv -o rows.csv", "--cpus 8 --seeds 2"),
        (6, "vmapsim boot --json", ""),
        (7, "vmapsim info", ""),
        (7, "vmapsim demo --cpus 2", ""),
        (12, "vmapsim demo", ""),
        (26, "vmapsim compare --kernel 6.3,6.4", ""),
    ]
    assert with_counts(["sweep", "--cpus", "8-64:8", "--seeds", "10"], "--cpus 8 --seeds 2") == [
        "sweep", "--cpus", "8", "--seeds", "2"]  # fmt: skip
    with pytest.raises(NotRunnable, match="only counts"):
        with_counts(["boot", "--kernel", "6.3"], "--kernel 6.4")
