"""What is simulated, as one value: a machine, its kernel and a load path, userspace, a workload, time.

A :class:`Scenario` resolves what it is given once, when it is made (the machine from a preset or a
file, the kernel from the machine's release, the catalog from the kernel, the load path from the
kernel and pipeline, udev's worker limit, the costs) into a :class:`~vmapsim.loader.Run`;
:meth:`Scenario.jobs` builds the workload's jobs and :meth:`Scenario.simulate` runs them to a
:class:`~vmapsim.loader.Result`.  ``vmapsim boot``, ``load``, ``worst``, ``sweep`` and ``compare``
evaluate scenarios and nothing else; :func:`storm` is the set of them ``boot`` and ``load`` show.

>>> s = Scenario("qemu-kvm", cpus=4, pipeline="v6.3")
>>> s.run.path.name, s.run.workers, len(s.jobs())  # 4 CPUs, 4 ACPI processors, a virtio device
('v6.3', 24, 9)
>>> s.simulate().metrics()["loads"] == s.simulate().metrics()["loads"]
True
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from vmapsim import layouts
from vmapsim.checks import NR_CPUS_MAX, flag, integer, number, parse_number, random_seed, show, strings, text
from vmapsim.errors import InvalidArgument
from vmapsim.layouts import Layout
from vmapsim.loader import RELEASED, Job, Pipeline, Request, Result, Run, Schedule, selection, simulate
from vmapsim.loader.costs import CostModel
from vmapsim.loader.request import Syscall
from vmapsim.loader.run import DEFAULT_KERNEL
from vmapsim.modules import Catalog, ModuleImage
from vmapsim.modules.shipped import catalog_for
from vmapsim.units import PAGE_SIZE
from vmapsim.workloads import Machine, Modprobe, find_machine, udev_boot, udev_workers
from vmapsim.workloads.kmod import kmod_version, syscall_for

__all__ = ["DEFAULT_CPUS", "Coldplug", "Loads", "Scenario", "distinct", "image_spec", "storm"]

#: CPUs of a coldplug whose machine file does not say (the 255-CPU server of the 2023 thread).
DEFAULT_CPUS = 255
#: The jobs of the last few workloads, by what decides them (boot runs one workload under 7 load paths).
_JOBS: dict[tuple[object, ...], tuple[Catalog, tuple[Request | Job, ...]]] = {}
_JOBS_KEPT = 8


def _syscall(value: Syscall | str) -> Syscall:
    return Syscall.of(value)


@attrs.frozen
class Coldplug:
    """systemd-udevd's coldplug of the scenario's machine: one kmod job per uevent
    (:func:`~vmapsim.workloads.udev_boot`), under udev's worker limit."""

    def jobs(self, s: Scenario) -> list[Request | Job]:
        """The coldplug's jobs; :class:`InvalidArgument` when no uevent loads a module (every figure would be
        0, which says nothing about the machine).  Runtime complexity: O(cpus + devices)."""
        if s.machine is None:
            raise InvalidArgument("a coldplug needs a machine (a preset, a machine file or a modalias list)")
        jobs: list[Request | Job] = list(
            udev_boot(s.catalog_used, s.machine, s.run.cpus, seed=s.seed, jitter=s.arrivals, kmod=s.kmod,
                      decompresses=s.run.path.decompresses)
        )
        if not jobs:
            raise InvalidArgument(f"no device of {s.machine.name} matches a module of the {s.catalog_used.kernel} "
                                  "catalog: nothing to load (scan the machine's own modules: vmapsim scan "
                                  "/lib/modules/$(uname -r) --save FILE, then --catalog FILE)")  # fmt: skip
        return jobs


@attrs.frozen
class Loads:
    """Modules loaded on every CPU at once, and explicit requests.

    ``modules`` are module names or modaliases (resolved as kmod resolves them); with ``deps`` each CPU
    runs modprobe (dependencies first, live modules skipped), else each CPU loads each module alone, as
    insmod does.  ``syscall`` is what userspace calls (``init_module`` for kmod < 31's decompressed
    image).  ``requests`` run as well (a request file's, :func:`~vmapsim.workloads.read_requests`).
    """

    modules: tuple[str, ...] = ()
    requests: tuple[Request, ...] = ()
    syscall: Syscall = attrs.field(default=Syscall.FINIT_MODULE, converter=_syscall)
    deps: bool = True

    def __attrs_post_init__(self) -> None:
        strings("modules", self.modules)
        flag("deps", self.deps)
        if not isinstance(self.requests, tuple) or not all(isinstance(r, Request) for r in self.requests):
            raise InvalidArgument(f"requests={show(self.requests)}: expected a tuple of Request values")
        if not self.modules and not self.requests:
            raise InvalidArgument("nothing to load: name modules or aliases, or give requests")

    def names(self, catalog: Catalog) -> list[str]:
        """The modules asked for, modaliases resolved in ``catalog`` as kmod does.  Runtime: O(aliases)."""
        out: list[str] = []
        for name in self.modules:
            found = [name] if name in catalog else catalog.match_alias(name)
            if not found:
                raise InvalidArgument(f"no module or alias {name!r} in the {catalog.kernel} catalog")
            out += found
        return out

    def jobs(self, s: Scenario) -> list[Request | Job]:
        """Each CPU's loads (modprobe's, or insmod's without ``deps``), then the requests.  Runtime: O(jobs)."""
        catalog, cpus = s.catalog_used, s.run.cpus
        names = self.names(catalog)
        jobs: list[Request | Job] = []
        if self.deps and names:
            jobs = [Modprobe(tuple(names), cpu=c, syscall=self.syscall) for c in range(cpus)]
        elif names:
            jobs = [Request(m, cpu=c, syscall=self.syscall) for c in range(cpus) for m in names]
        for req in self.requests:
            if isinstance(req.module, str) and req.module not in catalog:
                raise InvalidArgument(f"no module {req.module!r} in the {catalog.kernel} catalog (a request)")
        return jobs + list(self.requests)

    def missing(self, catalog: Catalog) -> list[tuple[str, list[str]]]:
        """Without ``deps``: each module's dependencies it does not load itself (a kernel would refuse
        it with -ENOENT; vmapsim does not resolve symbols).  Runtime complexity: O(modules)."""
        if self.deps:
            return []
        names = self.names(catalog)
        out = [(m, [d for d in catalog[m].depends if d not in names]) for m in names]
        return [(m, deps) for m, deps in out if deps]


def _whole_path(pipeline: str | Pipeline | None) -> bool:
    """Whether ``pipeline`` is a whole load path that brings its own kernel (a released name, a Pipeline)."""
    return isinstance(pipeline, Pipeline) or (isinstance(pipeline, str) and pipeline in RELEASED)


def _machine(value: Machine | str | None) -> Machine | None:
    return None if value is None else find_machine(value)


def _layout(value: Layout | str | None) -> Layout | None:
    if value is None or isinstance(value, Layout):
        return value
    return layouts.by_name(value)  # refuses an unknown name, naming the known ones


def _catalog(value: Catalog | str | None) -> Catalog | None:
    if isinstance(value, str):
        if value in Catalog.builtins():
            return Catalog.builtin(value)
        return Catalog.load(value)  # a saved catalog; refused, naming the file, when it cannot be read
    if value is not None and not isinstance(value, Catalog):
        raise InvalidArgument(f"catalog={show(value)}: expected a Catalog, a shipped catalog's name or a file")
    return value


def image_spec(spec: str, catalog: Catalog) -> ModuleImage:
    """``NAME[=BASE]:TYPE=SIZE,...``: BASE's image (default NAME's) named NAME, with the memory types given
    resized (bytes, or with K, M or G), e.g. a KASAN build ``big_kasan=kvm_intel:text=2436K,init_text=304K``.
    Runtime complexity: O(len(spec)).

    >>> image_spec("big=loop:text=1M", Catalog.builtin("debian-6.12-amd64")).memory[0]
    1048576
    """
    if not isinstance(spec, str):
        raise InvalidArgument(f"image={show(spec)}: expected NAME[=BASE]:TYPE=SIZE,...")
    head, colon, sizes = spec.partition(":")
    name, _, base = head.partition("=")
    if not colon or not name:
        raise InvalidArgument(f"image {spec!r}: expected NAME[=BASE]:TYPE=SIZE,... (e.g. "
                              "big_kasan=kvm_intel:text=2436K,init_text=304K)")  # fmt: skip
    values: dict[str, int] = {}
    for part in filter(None, sizes.split(",")):
        kind, eq, size = part.partition("=")
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(size[-1:].upper(), 1)
        digits = size[:-1] if scale > 1 else size
        if not eq:
            raise InvalidArgument(f"image {spec!r}: {part!r} is not TYPE=SIZE (bytes, or with K, M or G)")
        values[kind] = parse_number(digits, what=f"image {show(spec)}: the size in {show(part)} (bytes, or with K, "
                                    "M or G)", decimal=True, lo=0, hi=10**12 - 1) * scale
    return catalog[base or name].resized(name, **values)


@attrs.frozen
class Scenario:
    """One simulation, described: everything ``vmapsim boot`` (and ``load``, ``worst``, a sweep's point)
    runs, resolved once into :attr:`run`.

    ``machine``: a preset's name, a machine file or modalias list (:func:`~vmapsim.workloads.find_machine`),
    a :class:`~vmapsim.workloads.Machine`, or None (no udev: :class:`Loads` alone, no worker limit).
    ``cpus``: None for the machine file's, else :data:`DEFAULT_CPUS`.  ``kernel``: a release
    (None: the machine's release, where its file records one); ``pipeline``: a proposal on the
    kernel's path, a released path (``v6.3`` is 6.3's own) or a :class:`~vmapsim.loader.Pipeline`
    (:func:`~vmapsim.loader.load_path`).  ``catalog``: the modules (a shipped name, a saved file or a
    Catalog); None: the kernel's shipped catalog (the nearest release's, said in :attr:`notes`), and
    without a kernel the machine's.  ``images``: modules of your own sizes added to it (values, or
    :func:`image_spec` texts).  ``kmod``: kmod's version (None: the machine's; before 31 it
    decompresses compressed modules itself and calls ``init_module(2)``).  ``jitter``: uevent
    arrivals spread over this many seconds; ``cost_jitter``: stage durations vary by this fraction
    (None: the machine's calibrated values, else 0.05 s and 0.25; without a machine 0 and 0);
    ``lockstep``: every heavy stage takes the same time.  ``layout``: a layout or its name (None:
    the machine's, else x86_64).  ``module_align``: ``MODULE_ALIGN``.  ``schedule``: a schedule
    to replay (``vmapsim worst --save``).  ``workload``: :class:`Coldplug` (the default) or :class:`Loads`.

    >>> Scenario(kernel="7.3").catalog_used.kernel
    '7.3.4+deb13-amd64'
    >>> Scenario(kernel="6.3").notes[0]
    'no 6.3 catalog ships: running on the 6.1.0-56-amd64 catalog (debian-6.1-amd64), the nearest shipped kernel'
    """

    machine: Machine | None = attrs.field(default=attrs.Factory(lambda: find_machine("intel-server")),
                                          converter=_machine)
    cpus: int | None = None
    kernel: str | None = None
    pipeline: str | Pipeline | None = None
    kmod: int | None = None
    seed: int = 0
    jitter: float | None = None
    cost_jitter: float | None = None
    lockstep: bool = False
    layout: Layout | None = attrs.field(default=None, converter=_layout)
    module_align: int = PAGE_SIZE
    catalog: Catalog | None = attrs.field(default=None, converter=_catalog)
    images: tuple[ModuleImage | str, ...] = ()
    schedule: Schedule | None = None
    workload: Coldplug | Loads = attrs.field(factory=Coldplug)
    #: The run every field resolves to: path, layout, CPUs, catalog, costs, workers, seed.
    run: Run = attrs.field(init=False, eq=False, repr=False)
    #: Seconds over which uevents arrive (``jitter`` resolved).
    arrivals: float = attrs.field(init=False, eq=False, repr=False)
    #: What was chosen for the user, to say aloud (a catalog of another release than the kernel's).
    notes: tuple[str, ...] = attrs.field(init=False, eq=False, repr=False)
    #: The shipped catalog's name the modules come from (None for a catalog given as a value or file).
    catalog_name: str | None = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        m = self.machine
        cpus = self.cpus if self.cpus is not None else (m.cpus if m is not None and m.cpus else DEFAULT_CPUS)
        integer("cpus", cpus, 1, NR_CPUS_MAX)
        kernel = self.kernel
        if kernel is None and m is not None and not _whole_path(self.pipeline):
            kernel = m.release  # a machine file's kernel, unless the pipeline names a whole path (v6.3...)
        text("kernel", kernel, optional=True)
        if self.kmod is not None:
            kmod_version(self.kmod)
        random_seed("seed", self.seed)
        flag("lockstep", self.lockstep)
        if not isinstance(self.workload, Coldplug | Loads):
            raise InvalidArgument(f"workload={show(self.workload)}: expected Coldplug() or Loads(...)")
        if self.schedule is not None and not isinstance(self.schedule, Schedule):
            raise InvalidArgument(f"schedule={show(self.schedule)}: expected a Schedule")
        if m is not None:
            arrivals, drift = m.timing(self.jitter, self.cost_jitter)
        else:
            arrivals, drift = (self.jitter or 0.0), (self.cost_jitter or 0.0)
        number("jitter", arrivals, 0)
        layout = self.layout or layouts.by_name(m.layout if m is not None else "x86_64")
        name, catalog, notes = self._modules(kernel, layout)
        run = Run(self.pipeline, layout, cpus, catalog, costs=CostModel(jitter=drift, lockstep=self.lockstep),
                  module_align=self.module_align, seed=self.seed, kernel=kernel,
                  workers=udev_workers(cpus, m.ram) if m is not None and isinstance(self.workload, Coldplug)
                  else None)  # fmt: skip
        notes += run.notes  # what the run says of its kernel (an enterprise kernel's base)
        if catalog.config.arch != layout.arch:
            notes += (f"warning: the {catalog.kernel} catalog holds {catalog.config.arch} modules but layout "
                      f"{layout.name} is {layout.arch}'s",)  # fmt: skip
        object.__setattr__(self, "run", run)  # frozen: resolved once, here
        object.__setattr__(self, "arrivals", arrivals)
        object.__setattr__(self, "notes", notes)
        object.__setattr__(self, "catalog_name", name)

    def _modules(self, kernel: str | None, layout: Layout) -> tuple[str | None, Catalog, tuple[str, ...]]:
        """The one rule for which modules a scenario loads: the catalog given, else the kernel's (its own
        release's shipped catalog, the machine's first; else the nearest, said aloud), else the machine's;
        then the machine's own file sizes and the images added."""
        m, notes = self.machine, tuple[str, ...]()
        catalog, name = self.catalog, None
        if catalog is None and kernel is not None:
            choice = catalog_for(kernel, layout.arch, prefer=m.catalog if m is not None else None)
            name, notes = choice.name, tuple(filter(None, [choice.note]))
        elif catalog is None:
            name = m.catalog if m is not None else catalog_for(DEFAULT_KERNEL, layout.arch).name
        if catalog is None:
            assert name is not None  # chosen just above
            catalog = Catalog.builtin(name)
        if m is not None:
            catalog = m.own_files(catalog)
        if not isinstance(self.images, tuple):
            raise InvalidArgument(f"images={show(self.images)}: expected a tuple of images or image texts")
        if self.images:
            base = catalog
            catalog = catalog.with_images(image_spec(i, base) if isinstance(i, str) else i for i in self.images)
        return name, catalog, notes

    @property
    def catalog_used(self) -> Catalog:
        """The catalog the run loads from (:attr:`run`'s).  Runtime complexity: O(1)."""
        return self.run.module_catalog

    @property
    def compressed(self) -> bool:
        """Whether the catalog's module files are compressed (kmod < 31 then decompresses them itself).

        Runtime complexity: O(modules).
        """
        return any(m.compression != "none" for m in self.catalog_used.modules.values())

    @property
    def syscall(self) -> Syscall:
        """The syscall userspace makes: the workload's, or for a coldplug kmod's (:func:`syscall_for`).

        Runtime complexity: O(modules) for a coldplug.
        """
        if isinstance(self.workload, Loads):
            return self.workload.syscall
        kmod = self.kmod if self.kmod is not None else self.machine.kmod if self.machine else 34
        return syscall_for(kmod, self.compressed, self.run.path.decompresses)

    def jobs(self) -> list[Request | Job]:
        """The workload's jobs, in time.  Scenarios that differ only in their load path (not in whether it
        decompresses, which picks kmod's syscall) have the same jobs:
        they are built once and shared (jobs are frozen values).  Runtime complexity: O(jobs) the first
        time, O(1) after.
        """
        key = (id(self.catalog_used), self.machine, self.run.cpus, self.seed, self.arrivals, self.kmod, self.workload,
               self.run.path.decompresses)  # fmt: skip
        hit = _JOBS.get(key)
        if hit is not None and hit[0] is self.catalog_used:  # the same catalog object, not a reused id
            return list(hit[1])
        jobs = self.workload.jobs(self)
        if len(_JOBS) >= _JOBS_KEPT:
            _JOBS.pop(next(iter(_JOBS)))
        _JOBS[key] = (self.catalog_used, tuple(jobs))
        return jobs

    def same_run(self, other: Scenario) -> bool:
        """Whether this scenario's run is provably ``other``'s: the same jobs, schedule and run settings, and
        load paths its jobs' syscalls cannot tell apart (:meth:`~vmapsim.loader.Pipeline.as_seen_by`: a
        proposal that acts on ``finit_module()`` alone, under kmod < 31's ``init_module()``).  The results
        then differ only in the path's name.  Runtime complexity: O(jobs).

        >>> a, b = (Scenario("qemu-kvm", kernel="6.12", kmod=30, pipeline=p) for p in (None, "kread-dedup"))
        >>> a.same_run(b), a.same_run(attrs.evolve(a, kmod=34))
        (True, False)
        """
        if self is other:
            return True
        mine = self.jobs()
        if mine != other.jobs() or self.schedule != other.schedule:
            return False
        a, b = self.run, other.run
        if any(getattr(a, name) != getattr(b, name) for name in _RUN_SETTINGS) or a.module_catalog != b.module_catalog:
            return False
        asked = {getattr(j, "syscall", None) for j in mine}
        syscalls = frozenset(s for s in asked if isinstance(s, Syscall))
        if len(syscalls) != len(asked):
            return False  # a job of another kind: what it asks of the path is not known
        # a scenario's run starts from an empty space and loads modules, which never calls vm_map_ram(): it
        # makes no vmap block (tests/test_reuse.py holds every preset's storm to that)
        return a.path.as_seen_by(syscalls).same_as(b.path.as_seen_by(syscalls), blocks=False)

    def simulate(self, *, until: float | None = None) -> Result:
        """Run the jobs (on the schedule, when one is given); the :class:`~vmapsim.loader.Result`.

        ``until`` stops the run after that instant (runs are deterministic: ``until=result.peak_time[w]``
        shows the space at its peak).  Runtime complexity: one run of the jobs.
        """
        return simulate(self.jobs(), self.run, schedule=self.schedule, until=until)


#: What a Run holds beyond its load path's name: every setting two runs must share to be one run.
_RUN_SETTINGS = tuple(f.name for f in attrs.fields(Run) if f.eq and f.name not in ("pipeline", "kernel"))


def distinct(scenarios: Sequence[Scenario]) -> list[int]:
    """For each scenario, the index of the first one whose run it is (:meth:`Scenario.same_run`): the runs to
    compute, and which result each of the others repeats.  Runtime complexity: O(n × distinct × jobs).

    >>> distinct([Scenario("qemu-kvm", kernel=k, kmod=30, pipeline=p)
    ...           for k, p in (("6.12", None), ("6.12", "kread-dedup"), ("6.1", None))])
    [0, 0, 2]
    """
    firsts: list[int] = []
    out = []
    for i, s in enumerate(scenarios):
        j = next((j for j in firsts if scenarios[j].same_run(s)), None)
        if j is None:
            firsts.append(i)
        out.append(i if j is None else j)
    return out


def storm(base: Scenario, kernels: Sequence[str | None] | None = None, pipelines: str | Sequence[str | None] = "all",
          kmods: Sequence[int] | None = None) -> list[Scenario]:  # fmt: skip
    """The scenarios ``vmapsim boot`` and ``load`` show side by side: ``base`` under each load path of
    :func:`~vmapsim.loader.selection` (``kernels``, default the base's, a machine file's release;
    ``pipelines``, default every named path) for each kmod of ``kmods`` -- by default the machine's and
    the other generation's (30 and 34), unless ``base`` sets ``kmod`` or a schedule (a schedule belongs
    to one storm's jobs) or has no machine.  In that order: kmod outermost.  Runtime complexity: O(paths × kmods).

    >>> [s.run.path.name for s in storm(Scenario("qemu-kvm", kernel="6.12"), pipelines=(None, "page-list"))]
    ['6.12', '6.12+page-list', '6.12', '6.12+page-list']
    """
    own = base.kmod if base.kmod is not None else base.machine.kmod if base.machine is not None else None
    if kmods is None:
        kmods = [own] if own is not None else []  # no machine: one run per path, no kmod
        if own is not None and base.kmod is None and base.schedule is None:
            kmods.append(34 if own < 31 else 30)
    # without kernels: the base's kernel for its own rows ("all"); named pipelines resolve it each (v6.3: 6.3)
    chosen = list(kernels) if kernels is not None else [base.run.kernel if pipelines == "all" else base.kernel]
    pairs = selection(chosen, pipelines)
    each: Sequence[int | None] = kmods or [None]
    return [attrs.evolve(base, kernel=k, pipeline=p, kmod=kmod) for kmod in each for k, p in pairs]
