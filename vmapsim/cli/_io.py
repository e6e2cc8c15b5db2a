"""What every command does around the library: read and write files, progress bars, notes on stderr,
and runs on forked workers that get their tasks as arguments."""

from __future__ import annotations

import concurrent.futures
import importlib
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import tqdm

from vmapsim.errors import InvalidArgument

__all__ = ["FORK_WORK", "fork_map", "names", "note", "optional", "progress_bar", "read", "writable", "write"]


def read(path: str) -> str:
    """A text file's contents; :class:`InvalidArgument` naming it when it cannot be read."""
    try:
        return Path(path).read_text(errors="replace")
    except OSError as e:
        raise InvalidArgument(f"cannot read {path}: {e.strerror}") from None


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
    """Refuse a file :func:`write` could not write (a folder, or in no folder) before minutes of work."""
    target = Path(path)
    if target.is_dir():
        raise InvalidArgument(f"cannot write {path}: it is a folder")
    if not target.absolute().parent.is_dir():
        raise InvalidArgument(f"cannot write {path}: no folder {target.parent}")


def note(*texts: str) -> None:
    """Each text as one ``vmapsim: note:`` line on stderr (once each, in order)."""
    for text in dict.fromkeys(texts):
        print(f"vmapsim: note: {text}", file=sys.stderr)


def optional(module: str, why: str) -> Any:
    """An optional dependency's module (typed Any: Dask ships no type information), or a clear error."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise InvalidArgument(why) from None


def progress_bar(what: str, unit: str = "it", stream: TextIO | None = None) -> Callable[[int, int], None] | None:
    """tqdm's bar (rate and ETA) on ``stream`` (stderr) when it is a terminal, else None: never in a pipe,
    a file or ``--json`` output.  The callback takes (done, total)."""
    out = stream or sys.stderr
    if not out.isatty():
        return None
    bar: list[Any] = []

    def show(done: int, total: int) -> None:
        if not bar:
            bar.append(tqdm.tqdm(total=total, desc=what, unit=unit, file=out, leave=False, dynamic_ncols=True))
        bar[0].update(done - bar[0].n)
        if done >= total:
            bar[0].close()

    return show


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
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n = len(tasks)
    out: list[Any] = [None] * n
    # fork is safe only in a process with one thread (a library caller's threads could hold locks)
    small = work < FORK_WORK or n < 2
    if small or cpus < 2 or threading.active_count() > 1 or "fork" not in multiprocessing.get_all_start_methods():
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
