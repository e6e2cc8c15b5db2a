"""What every command does around the library: read and write files, progress bars, notes on stderr,
and runs on forked workers that get their tasks as arguments."""

from __future__ import annotations

import importlib
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from vmapsim.checks import read_file, usable_cpus
from vmapsim.errors import InvalidArgument

__all__ = [
    "FORK_WORK",
    "MAX_INPUT_BYTES",
    "PROGRESS_EVERY",
    "STDIN",
    "duration",
    "fork_map",
    "label",
    "names",
    "note",
    "optional",
    "progress_bar",
    "read",
    "read_bytes",
    "workers",
    "writable",
    "write",
]

#: The file name that stands for standard input, wherever a command reads a file.
STDIN = "-"
#: The most a command reads of one input (1 GiB, what sweep's row tables may hold): the bound of those
#: whose parser sets none (a trace, a stats file, a .config); a parser's lower limit is passed instead.
MAX_INPUT_BYTES = 1 << 30


def label(path: str) -> str:
    """How messages and headers name an input: ``<stdin>`` for ``-``, else the path."""
    return "<stdin>" if path == STDIN else path


def read(path: str, limit: int = MAX_INPUT_BYTES) -> str:
    """A text file's contents (``-``: standard input), undecodable bytes replaced.

    See :func:`read_bytes` for the limit and the errors.  Runtime complexity: O(min(size, limit)).
    """
    return read_bytes(path, limit).decode(errors="replace")


def read_bytes(path: str, limit: int = MAX_INPUT_BYTES) -> bytes:
    """A file's bytes (``-``: standard input, which can be read once), at most ``limit`` of them.

    A path is read by :func:`~vmapsim.checks.read_file` (regular files only, the size checked before
    the read); standard input by reading at most ``limit + 1`` bytes however long the pipe runs.  More
    than ``limit`` is refused: :class:`InvalidArgument` naming the input, as when it cannot be read.
    Runtime complexity: O(min(size, limit)).
    """
    if path != STDIN:
        return read_file(path, limit, what="")
    stream = sys.stdin
    # A pipe gives its bytes once: a second '-' would read nothing and pass for an empty file.
    if stream is None or stream.closed:
        raise InvalidArgument("standard input ('-') is closed or was read already: only one input can be '-'")
    try:
        data = stream.buffer.read(limit + 1)
    except OSError as e:
        raise InvalidArgument(f"cannot read standard input: {e.strerror or e}") from None
    stream.close()
    if len(data) > limit:
        raise InvalidArgument(f"{label(path)}: more than {limit} bytes, the most this input may hold")
    return data


def write(path: str, data: bytes) -> None:
    """Write all of ``data`` or nothing: a temporary file renamed into place."""
    target = Path(path)
    tmp = target.with_name(target.name + ".part")
    try:
        tmp.write_bytes(data)
        tmp.replace(target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise InvalidArgument(f"cannot write {path}: {e.strerror}") from None


def writable(path: str) -> None:
    """Refuse, before any work, a file :func:`write` could not write: its folder is missing or it is one."""
    if path == STDIN:  # only -o takes '-': a second file cannot share standard output with it
        raise InvalidArgument("cannot write -: standard output is the command's output (-o -); name a file")
    target = Path(path)
    if target.is_dir():
        raise InvalidArgument(f"cannot write {path}: it is a folder")
    if not target.absolute().parent.is_dir():
        raise InvalidArgument(f"cannot write {path}: no folder {target.parent}")


def note(*texts: str) -> None:
    """Each text as one ``vmapsim: note:`` line on stderr (once each, in order)."""
    for text in dict.fromkeys(texts):
        print(f"vmapsim: note: {text}", file=sys.stderr)


def workers(asked: int | None) -> int | None:
    """``--workers``, capped at the usable CPUs (:func:`~vmapsim.checks.usable_cpus`) with a note when it
    asks for more: more processes than CPUs only share them.  None (not given) stays None.
    Runtime complexity: O(CPUs).
    """
    cpus = usable_cpus()
    if asked is None or asked <= cpus:
        return asked
    note(f"--workers {asked}: this process may use {cpus} CPUs; starting {cpus} worker processes")
    return cpus


def optional(module: str, why: str) -> Any:
    """An optional dependency's module (typed Any: Dask ships no type information), or a clear error."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise InvalidArgument(why) from None


#: Off a terminal, a long run's progress is a line on stderr: none in its first this-many seconds (a
#: short run says nothing), then one at each tenth of the work done or after this long, whichever comes first.
PROGRESS_EVERY = 30.0


def progress_bar(what: str, unit: str = "it", stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> Callable[[int, int], None]:  # fmt: skip
    """A progress callback taking (done, total): tqdm's bar (rate and ETA) on ``stream`` (stderr) when it is
    a terminal; else sparse ``vmapsim: <what>: 40% (400 of 1000 <unit>s), about 2 min left`` lines, as
    :data:`PROGRESS_EVERY` says, so a pipe or a log file sees a long run advance (``--json`` goes to
    stdout, unaffected).  ``clock``: seconds, for the lines' pace.  Runtime complexity: O(1) per call.
    """
    out = stream or sys.stderr
    if not out.isatty():
        return _progress_lines(what, unit, out, clock)
    bar: list[Any] = []

    def show(done: int, total: int) -> None:
        if not bar:
            import tqdm  # only a terminal shows the bar: a pipe or a benchmark does not pay for the import

            bar.append(tqdm.tqdm(total=total, desc=what, unit=unit, file=out, leave=False, dynamic_ncols=True))
        bar[0].update(done - bar[0].n)
        if done >= total:
            bar[0].close()

    return show


def _progress_lines(what: str, unit: str, out: TextIO, clock: Callable[[], float]) -> Callable[[int, int], None]:
    start = clock()
    last = [start, 0]  # the time and the tenth of the last line (the start: none yet)

    def show(done: int, total: int) -> None:
        now, tenth = clock(), done * 10 // max(total, 1)
        if now - start < PROGRESS_EVERY or (tenth <= last[1] and now - last[0] < PROGRESS_EVERY):
            return
        last[:] = [now, tenth]
        left = f", about {duration((now - start) * (total - done) / done)} left" if 0 < done < total else ""
        print(f"vmapsim: {what}: {done * 100 // max(total, 1)}% ({done} of {total} {unit}s){left}", file=out,
              flush=True)  # fmt: skip

    return show


def duration(seconds: float) -> str:
    """``seconds`` as people say it: 45 s, 12 min, 3.5 h, 2.1 days.  Runtime complexity: O(1)."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


#: Jobs (summed over the runs) below which forking workers costs more than it saves.
FORK_WORK = 1000
#: The tasks of this worker process, set by :func:`_start` when the pool forks it.
_TASKS: Sequence[Any] = ()
_FN: Callable[[Any], Any] | None = None


def _start(fn: Callable[[Any], Any], tasks: Sequence[Any]) -> None:
    """A forked worker's initializer: the tasks arrive as its arguments (inherited, never pickled)."""
    global _TASKS, _FN
    _TASKS, _FN = tasks, fn


def _task(i: int) -> Any:
    assert _FN is not None  # set by _start in this worker
    return _FN(_TASKS[i])


def fork_map(fn: Callable[[Any], Any], tasks: Sequence[Any], bar: Callable[[int, int], None] | None, *,
             work: int) -> list[Any]:  # fmt: skip
    """``[fn(t) for t in tasks]``, on forked workers (one per usable CPU) where fork exists and the ``work``
    (jobs over all runs) is worth it, else in turn.

    The workers get ``fn`` and the tasks as the pool's initializer arguments, which a fork hands over
    without pickling (a task holds a catalog); only indices and answers travel.  Each task is
    deterministic, so the answers are the same whichever process ran them.
    """
    cpus = usable_cpus()
    n = len(tasks)
    out: list[Any] = [None] * n
    # fork is safe only in a process with one thread (a library caller's threads could hold locks)
    small = work < FORK_WORK or n < 2
    forks = not small and cpus >= 2 and threading.active_count() == 1
    if forks:  # imported only to fork: a run too small to fork skips their ~20 ms
        import concurrent.futures
        import multiprocessing

        forks = "fork" in multiprocessing.get_all_start_methods()
    if not forks:
        for i, task in enumerate(tasks):
            out[i] = fn(task)
            if bar:
                bar(i + 1, n)
        return out
    ctx = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(min(cpus, n), mp_context=ctx, initializer=_start,
                                                initargs=(fn, tasks)) as pool:  # fmt: skip
        futures = {pool.submit(_task, i): i for i in range(n)}
        for k, f in enumerate(concurrent.futures.as_completed(futures), 1):
            out[futures[f]] = f.result()
            if bar:
                bar(k, n)
    return out


def names(text: str | None) -> tuple[str | None, ...]:
    """A comma-separated option as a tuple (``(None,)`` when not given)."""
    return (None,) if not text else tuple(text.split(","))
