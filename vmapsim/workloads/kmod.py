"""kmod in userspace: what ``modprobe`` (and udev's kmod builtin) does with one device's modules.

For each module an alias resolves to, kmod loads its ``depends=`` closure in
modprobe order (``kmod_module_probe_insert_module()``): a module already LIVE
(``/sys/module/<name>/initstate`` reads ``live``) is skipped -- a COMING one is
not; ``-EEXIST`` counts as success; any other error stops that module's chain.
Before kmod 31 kmod decompresses modules itself and calls ``init_module(2)``;
from 31 it passes compressed files to ``finit_module(2)``.

>>> Modprobe(("kvm_intel",), cpu=3).syscall
<Syscall.FINIT_MODULE: 'finit_module'>
"""

from __future__ import annotations

from collections.abc import Generator

import attrs

from vmapsim.checks import CPUS_LIMIT, errno_pairs, integer, number, show, strings
from vmapsim.engine import Delay, Wait
from vmapsim.errors import InvalidArgument
from vmapsim.loader import Loader, Request
from vmapsim.loader.costs import Cost
from vmapsim.loader.errno import EEXIST
from vmapsim.loader.module_list import ModuleState
from vmapsim.loader.request import Syscall

# Enum members bound once: reading one off its Enum class costs about 50 ns on Python 3.11, and these
# are read for every stage of every load.
_COST_DECOMPRESS = Cost.DECOMPRESS
_FINIT_MODULE = Syscall.FINIT_MODULE
_INIT_MODULE = Syscall.INIT_MODULE
_STATE_LIVE = ModuleState.LIVE

__all__ = ["KMOD_NEWEST", "Modprobe", "kmod_version", "syscall_for"]

#: The newest kmod release vmapsim knows (34, Debian 13's); kmod's releases are numbered from 1.
KMOD_NEWEST = 34


def kmod_version(value: object, name: str = "kmod") -> int:
    """``value`` (the argument ``name``) as a kmod release number; :class:`InvalidArgument` naming it unless 1
    to :data:`KMOD_NEWEST` (a kmod that does not exist yet has no known behaviour to model).

    Runtime complexity: O(1).

    >>> kmod_version(99)
    Traceback (most recent call last):
    vmapsim.errors.InvalidArgument: kmod=99: no such kmod release (vmapsim knows kmod 1 to 34)
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= KMOD_NEWEST:
        raise InvalidArgument(f"{name}={show(value)}: no such kmod release (vmapsim knows kmod 1 to {KMOD_NEWEST})")
    return value


def syscall_for(kmod: int, compressed: bool, decompresses: bool = True) -> Syscall:
    """The syscall kmod ``kmod`` uses for a module file: init_module(2) for compressed ones before 31, and
    from 31 too when the kernel does not decompress (``decompresses``: 5.17+; kmod's ``do_finit_module()``
    then falls back as for -ENOSYS).  Runtime complexity: O(1).

    >>> [str(syscall_for(k, c)) for k, c in ((30, True), (34, True), (30, False))], str(syscall_for(34, True, False))
    (['init_module', 'finit_module', 'finit_module'], 'init_module')
    """
    return _INIT_MODULE if compressed and (kmod < 31 or not decompresses) else _FINIT_MODULE


def _syscall(value: object) -> Syscall:
    return Syscall.of(value)


def _by_name(value: Syscall) -> str:
    return repr(value.value)  # as a Request prints its syscall


@attrs.frozen
class Modprobe:
    """kmod handling one uevent: load each module and its dependencies (first), skipping LIVE ones.

    This is what systemd-udevd's kmod builtin does for a device's modalias:
    every module the alias resolves to, each after its ``depends=`` closure in
    modprobe order; a module already LIVE is skipped -- a COMING one is not;
    -EEXIST counts as success; another error stops that module's chain.
    ``syscall`` is a :class:`~vmapsim.loader.request.Syscall` or its name.
    ``fails`` lists modules whose init fails on this machine, with the errno.
    A job runs on one of the run's userspace workers (udev's worker limit).
    """

    modules: tuple[str, ...]
    cpu: int = 0
    time: float = 0.0
    syscall: Syscall = attrs.field(default=Syscall.FINIT_MODULE, converter=_syscall, repr=_by_name)
    fails: tuple[tuple[str, int], ...] = ()

    def __attrs_post_init__(self) -> None:
        strings("modules", self.modules, empty=False)
        integer("cpu", self.cpu, 0, CPUS_LIMIT - 1)
        number("time", self.time, 0)
        errno_pairs("fails", self.fails)

    def start(self, loader: Loader) -> None:
        """Check the job against the run and spawn it at ``time``.  Runtime complexity: O(modules)."""
        if loader.catalog is None:
            raise InvalidArgument("modprobe jobs need a catalog to resolve modules and dependencies")
        if not 0 <= self.cpu < loader.cpus:
            raise InvalidArgument(
                f"modprobe of {self.modules} runs on CPU {self.cpu}, but the machine has {loader.cpus}"
            )
        for name in self.modules:
            if name not in loader.catalog:
                loader.resolve(name)  # raises, naming the module
        loader.engine.spawn(self._run(loader), at=self.time)

    def _run(self, loader: Loader) -> Generator[Delay | Wait, None, None]:
        """One udev worker running kmod for one uevent."""
        assert loader.catalog is not None
        if loader.workers is not None:
            yield from loader.workers.acquire()
        fails = dict(self.fails)
        try:
            for name in self.modules:
                for img in loader.catalog.closure(name):
                    if loader.module_state(img.name) is _STATE_LIVE:
                        continue  # kmod reads /sys/module/<name>/initstate: live means done
                    if self.syscall is _INIT_MODULE and img.compression != "none":
                        # kmod < 31 decompresses the file itself, between that check and the syscall
                        yield from loader.kernel.compute(_COST_DECOMPRESS, img.decompressed_size)
                    req = Request(img, self.cpu, loader.engine.now, None, None, self.syscall, fails.get(img.name, 0))
                    ret = yield from loader.load(req)
                    if ret < 0 and ret != -EEXIST:  # -EEXIST is success to kmod
                        break
        finally:
            if loader.workers is not None:
                loader.workers.release(loader.engine)
