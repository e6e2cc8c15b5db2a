"""``load_module()`` in time: one request through a pipeline's stages and the kernel's error paths.

:func:`load_module` runs the stages in order (inside the 6.5 idempotent wrapper
for ``finit_module()`` when the pipeline has it); a stage's
:class:`~vmapsim.loader.kernel.LoadFailed` takes the error path of
``load_module()``: free the module memory (``module_deallocate()``), unlink an
unformed record, free the temporary copy (``free_copy()``), and bump the
``CONFIG_MODULE_STATS`` counter of the failure point.

:class:`Loader` is what userspace jobs (kmod, udev) see of a run: the clock, the
module states, and ``load(request)`` -- a syscall that returns when the kernel does.

>>> from vmapsim import simulate
>>> from vmapsim.loader import Request
>>> simulate([Request("loop")], catalog="debian-6.12-amd64").outcomes[0].timeline[-1][1]
'done'
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Protocol

import attrs

from vmapsim.engine import Delay, Engine, Event, Semaphore, Task, Wait
from vmapsim.errors import InvalidArgument
from vmapsim.loader.idempotent import Idempotent
from vmapsim.loader.kernel import Kernel, LoadFailed, LoadInfo
from vmapsim.loader.module_list import ModuleState
from vmapsim.loader.pipelines import Pipeline
from vmapsim.loader.request import Request, Syscall
from vmapsim.loader.stages import free_module_memory
from vmapsim.loader.stats import FailurePoint
from vmapsim.modules.catalog import Catalog
from vmapsim.modules.image import ModuleImage

# Enum members bound once: reading one off its Enum class costs about 50 ns on Python 3.11, and these
# are read for every stage of every load.
_AT_INIT = FailurePoint.INIT
_FINIT_MODULE = Syscall.FINIT_MODULE
_INIT_MODULE = Syscall.INIT_MODULE

__all__ = ["Job", "Loader", "load_module"]

_IDEMPOTENT = Idempotent()


def load_module(info: LoadInfo, k: Kernel, pipe: Pipeline) -> Generator[Delay | Wait, None, int]:
    """One request, start to return: the idempotent wrapper (6.5), the stages, the error paths.

    Called when the load starts (it records the start at once); returns the task to run, which fires
    ``info.done`` when the load returns and gives its return code (0 or -errno).
    """
    info.timeline.append((k.engine.now, "start"))
    if pipe.idempotent and info.request.syscall is _FINIT_MODULE:
        return _idempotent(info, k, pipe)
    return _stages(info, k, pipe, True)


def _idempotent(info: LoadInfo, k: Kernel, pipe: Pipeline) -> Generator[Delay | Wait, None, int]:
    try:
        yield from _IDEMPOTENT.run(info, k, lambda: _stages(info, k, pipe, False))
    finally:
        k.engine.fire(info.done)
    return info.ret


def _stages(info: LoadInfo, k: Kernel, pipe: Pipeline, fire: bool) -> Generator[Delay | Wait, None, int]:
    # One generator for the whole load (the caller's task yields from it directly): a level less to
    # resume at every step of every load.
    ret = 0
    engine, timeline = k.engine, info.timeline
    try:
        try:
            for stage in pipe.stages:
                timeline.append((engine.now, stage.name))
                task = stage.run(info, k)
                if task is not None:
                    yield from task
        except LoadFailed as f:
            ret = -f.errno
            _fail(info, k, f)
        finally:
            for cleanup in info.cleanups:
                cleanup()
        info.ret, info.end = ret, engine.now
        timeline.append((engine.now, "done"))
    finally:
        if fire:
            engine.fire(info.done)
    return ret


def _fail(info: LoadInfo, k: Kernel, f: LoadFailed) -> None:
    """Free what the failed load held (module memory, then the copy) and bump the stats counter."""
    if f.point is not _AT_INIT:  # do_init_module() freed the module itself
        if info.record is not None and info.past_layout:
            free_module_memory(k, info.record)
            if k.modules.get(info.image.name) is info.record:
                k.modules.remove(info.record)
        for held in (info.copy, info.read_buffer):
            if held is not None:
                k.free(held)
    # init_module(2) wastes the image userspace copied in when the copy fails; a failed
    # kernel_read_file() counts no bytes.
    read = info.image.decompressed_size if info.request.syscall is _INIT_MODULE else 0
    k.stats.count_failure(f.point, length=info.length, compressed_len=info.compressed_len if info.compressed else 0,
                          read_bytes=read, past_layout=info.past_layout)  # fmt: skip


class Job(Protocol):
    """Userspace work that issues loads during a run (kmod's modprobe, for one): anything with ``start``."""

    def start(self, loader: Loader) -> None:
        """Check the job against the run (raise :class:`InvalidArgument`) and spawn its tasks."""
        ...


@attrs.define(eq=False)
class Loader:
    """One run's loads: the kernel, the load path, every request's load_info in the order loads began.

    ``workers`` is the userspace concurrency limit jobs share (udev's worker
    limit), None for none.  Runtime complexity: O(1) per call.
    """

    kernel: Kernel
    pipeline: Pipeline
    catalog: Catalog | None
    workers: Semaphore | None = None
    loads: list[LoadInfo] = attrs.field(factory=list)

    @property
    def engine(self) -> Engine:
        """The run's engine (its clock is ``engine.now``)."""
        return self.kernel.engine

    @property
    def cpus(self) -> int:
        """Online CPUs of the machine."""
        return self.kernel.space.cpus

    def resolve(self, module: ModuleImage | str) -> ModuleImage:
        """The image a request names; :class:`InvalidArgument` without a catalog, ``UnknownModule`` if absent."""
        if isinstance(module, ModuleImage):
            return module
        if self.catalog is None:
            raise InvalidArgument(f"request names module {module!r} but no catalog was given")
        return self.catalog[module]

    def module_state(self, name: str) -> ModuleState | None:
        """The state of module ``name`` on the kernel's list (``/sys/module/<name>/initstate``), or None."""
        return self.kernel.modules.state_of(name)

    def begin(self, request: Request, image: ModuleImage) -> LoadInfo:
        """Register a load about to start (its outcome is reported in this order)."""
        info = LoadInfo.of(len(self.loads), request, image)
        self.loads.append(info)
        return info

    def run(self, info: LoadInfo, after: Event | None = None) -> Task:
        """The task of one load: wait for ``after`` (if any), load, then signal ``info.done``."""
        if after is not None:
            yield Wait(after)
        yield from load_module(info, self.kernel, self.pipeline)

    def load(self, request: Request) -> Generator[Delay | Wait, None, int]:
        """The syscall, from a job's task: load now; yield from it, and it returns the return code when
        the kernel does."""
        return load_module(self.begin(request, self.resolve(request.module)), self.kernel, self.pipeline)
