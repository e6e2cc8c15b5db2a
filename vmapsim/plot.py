"""Figures of simulation results (needs the ``plot`` extra: ``pip install '.[plot]'``).

Each figure draws the rows of :mod:`vmapsim.report.series` -- the rows ``--series`` writes -- so a
figure and its CSV cannot disagree.  A load path keeps one colour, line style and marker in every
panel (the three together survive greyscale printing); a curve equal to an earlier one is drawn once,
and its legend entry names the twins; each figure has one legend.

>>> import importlib.util
>>> importlib.util.find_spec("vmapsim.plot") is not None
True
"""

from __future__ import annotations

import bisect
import importlib.util
import math
import os
import textwrap
from collections.abc import Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from vmapsim.errors import InvalidArgument
from vmapsim.layouts import Layout
from vmapsim.loader import METRICS
from vmapsim.report import CALLERS, SWEEP_METRICS, Runs, by_kmod, histogram_series, pinned_series, sweep_series
from vmapsim.space import VmapSpace
from vmapsim.units import GiB, MiB

__all__ = ["allocation_histograms", "boot_figure", "histogram_figure", "pinned_over_time", "plot_path", "sweep_curves",
           "sweep_figure"]  # fmt: skip


def plot_path(path: str) -> Path:
    """``path`` as the image file to write; :class:`InvalidArgument` unless it ends in .png, .svg or .pdf,
    its folder exists and matplotlib is installed (so a command can refuse it before it runs).

    Runtime complexity: O(1).

    >>> plot_path("peaks.svg").suffix
    '.svg'
    """
    target = Path(path)
    if target.suffix.lower() not in (".png", ".svg", ".pdf") or target.is_dir():
        raise InvalidArgument(f"plot file {path}: expected a file name ending in .png, .svg or .pdf")
    if not target.absolute().parent.is_dir():
        raise InvalidArgument(f"cannot write {path}: no folder {target.parent}")
    if importlib.util.find_spec("matplotlib") is None:
        raise InvalidArgument("plotting needs matplotlib: pip install '.[plot]'")
    return target


def _pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend, or a clear error when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InvalidArgument("plotting needs matplotlib: pip install '.[plot]'") from None
    return plt


def _save(fig: Any, plt: Any, target: Path, path: str) -> None:
    """Write ``fig`` all or nothing: to a temporary name beside ``target``, then renamed over it."""
    tmp = target.with_name(f".{target.name}.part{target.suffix}")
    try:
        with plt.rc_context({"svg.fonttype": "none"}):  # SVG text stays text: searchable, editable
            fig.savefig(tmp, format=target.suffix[1:], dpi=200)
        os.replace(tmp, target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise InvalidArgument(f"cannot write {path}: {e.strerror}") from None
    finally:
        plt.close(fig)


# Sized for a paper's full text width (about 7 in) at print sizes; light grids to read values off.
_RC = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7.5, "xtick.labelsize": 7,
       "ytick.labelsize": 7, "figure.titlesize": 9, "axes.spines.top": False, "axes.spines.right": False,
       "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.5, "lines.linewidth": 0.9,
       "lines.markersize": 3.5}  # fmt: skip
# Okabe and Ito's colours (apart for colour-blind readers; yellow left out, faint on white), with line
# styles and markers cycling at other periods, so the three together stay apart in greyscale.
_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
_LINES: tuple[Any, ...] = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_WINDOW_LINE: dict[str, Any] = {"color": "black", "linestyle": (0, (6, 3)), "linewidth": 0.9}
#: Curves reaching this share of their window are drawn on a log scale with the window's size as a
#: line; lower, the size is named in the title and the scale is the curves' own.
_ON_SCALE = 1 / 50


def _styles(labels: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Each label's colour, line style and marker, by its place in ``labels``."""
    return {label: {"color": _COLOURS[n % len(_COLOURS)], "linestyle": _LINES[n % len(_LINES)],
                    "marker": _MARKERS[n % len(_MARKERS)], "markerfacecolor": "white"}
            for n, label in enumerate(labels)}  # fmt: skip


def _twins(curves: Mapping[str, Hashable]) -> dict[str, list[str]]:
    """Each label whose data no earlier label has, with the later labels that have the very same data."""
    first: dict[Hashable, str] = {}
    out: dict[str, list[str]] = {}
    for label, data in curves.items():
        if data in first:
            out[first[data]].append(label)
        else:
            first[data] = label
            out[label] = []
    return out


def _legend(fig: Any, styles: Mapping[str, Mapping[str, Any]], twins: Mapping[str, Mapping[str, list[str]]],
            extra: Sequence[tuple[Any, str]] = ()) -> None:  # fmt: skip
    """One legend under the panels, as many columns as the figure's width holds: each drawn label, naming
    its twins per column of panels (``twins``: heading -> drawn label -> its twins), then ``extra``."""
    from matplotlib.lines import Line2D

    headed = len(twins) > 1
    handles, texts = [], []
    for label, style in styles.items():
        drawn = {heading: same[label] for heading, same in twins.items() if label in same}
        if not drawn:
            continue  # a twin wherever it ran: named in its twin's entry
        notes = [f"{', '.join(names)}" + (f" in {heading}" if headed else "") for heading, names in drawn.items()
                 if names]  # fmt: skip
        text = label + "".join(f" = {note}" if n == 0 else f"; = {note}" for n, note in enumerate(notes))
        handles.append(Line2D([], [], **style))
        texts.append(textwrap.fill(text, 40, subsequent_indent="   ", break_on_hyphens=False))
    for handle, text in extra:
        handles.append(handle)
        texts.append(text)
    columns = max(1, int(fig.get_figwidth() / 2.5))  # an entry of 40 characters at 7.5 pt, and its line
    fig.legend(handles, texts, loc="outside lower center", ncols=min(columns, len(texts)), frameon=False,
               handlelength=3.2, columnspacing=1.2)  # fmt: skip


def _size(n: float, digits: int = 4) -> str:
    """``n`` bytes in the largest binary unit under it, to ``digits`` significant digits."""
    for unit, scale in (("TiB", 1024 * GiB), ("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.{digits}g} {unit}"
    return f"{n:.{digits}g} B"


def _window_scale(axes: Sequence[Any], top: float, least: float, size: int, unit: int) -> bool:
    """Put a row of panels on a scale that shows their curves; True when the window's size is on it.

    Curves reaching :data:`_ON_SCALE` of the window: a log axis from a decade under the lowest curve's
    peak (``least``) to above the window's size, drawn as a dashed line, so a tenfold cut stays a
    decade apart and the headroom shows.  Lower: a linear axis from zero to the curves' top.
    """
    from matplotlib.ticker import FuncFormatter

    if top < size * _ON_SCALE:
        for ax in axes:
            ax.set_ylim(0, max(top, 1) / unit * 1.08)
        return False
    bottom = 10 ** math.floor(math.log10(max(least, 1) / unit / 5))
    for ax in axes:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 1, 10, 100 MiB: not 10^0
        ax.axhline(size / unit, gid="window size", **_WINDOW_LINE)
        ax.set_ylim(bottom, size / unit * 2)
    return True


def boot_figure(
    results: Runs,
    *,
    layout: Layout | None = None,
    at_peak: Mapping[str, VmapSpace] | Mapping[int | None, Mapping[str, VmapSpace]] | None = None,
    window: str = "modules",
    title: str = "",
) -> Any:
    """The matplotlib Figure of :func:`pinned_over_time` (to look at, or to save yourself).

    ``results`` maps a label (a load path's name) to its :class:`~vmapsim.loader.Result`, or a kmod
    version to such a mapping: a column of panels per kmod, a row per window, each panel the rows of
    :func:`~vmapsim.report.pinned_series` as steps (pinned bytes in MiB against milliseconds).  A row's
    panels share their scale: where the curves reach a fiftieth of the window, a log axis with the
    window's size as a dashed line, else a linear one with the size named in the title.  ``at_peak``
    (label -> the space at that run's peak, or kmod -> such a mapping) adds a map of ``window`` at each
    run's peak, cut to the part any run uses: busy areas, lazily freed ones, VAs parked in 6.9+ node
    pools, white where free; runs with the same map share a row.  ``layout`` defaults to the first
    result's space's.  Runtime complexity: O(total samples + areas).
    """
    from matplotlib.lines import Line2D

    plt = _pyplot()
    runs = by_kmod(results)
    rows = pinned_series(runs, layout)
    if layout is None:
        first = next(iter(next(iter(runs.values())).values())).space
        assert first is not None  # pinned_series() refused a Result without one
        layout = first.layout
    curves: dict[tuple[Any, str, str], tuple[list[float], list[int]]] = {}
    for row in rows:
        xs, ys = curves.setdefault((row["kmod"], row["pipeline"], row["window"]), ([], []))
        xs.append(row["time_ms"])
        ys.append(row["pinned_bytes"])
    labels = list(dict.fromkeys(label for column in runs.values() for label in column))
    styles = _styles(labels)
    regions = layout.regions
    twins = {_heading(kmod): _twins({label: tuple((tuple(x), tuple(y)) for w in regions
                                                  for x, y in [curves[kmod, label, w.name]])
                                     for label in column})
             for kmod, column in runs.items()}  # fmt: skip
    peaks = by_kmod(at_peak) if at_peak else {}
    end = max(row["time_ms"] for row in rows)
    map_rows = sum(len(column) for column in peaks.values())
    with plt.rc_context(_RC):
        width = max(6.2, 3.5 * len(runs) + 0.6)
        heights = [2.1] * len(regions) + ([0.6 + 0.2 * map_rows] if peaks else [])
        fig = plt.figure(figsize=(width, sum(heights) + 1.4), layout="constrained")
        grid = fig.add_gridspec(len(heights), len(runs), height_ratios=heights)
        axes: list[list[Any]] = []
        on_scale: list[bool] = []
        for k, region in enumerate(regions):
            row_axes: list[Any] = []
            for c, kmod in enumerate(runs):
                ax = fig.add_subplot(grid[k, c], sharex=axes[0][0] if axes else row_axes[0] if row_axes else None,
                                     sharey=row_axes[0] if row_axes else None)  # fmt: skip
                for label in twins[_heading(kmod)]:
                    xs, ys = curves[kmod, label, region.name]
                    _steps(ax, xs, [y / MiB for y in ys], styles[label], labels.index(label), end,
                           gid=f"{kmod}/{label}/{region.name}")  # fmt: skip
                row_axes.append(ax)
            axes.append(row_axes)
            pinned = [max(curves[kmod, label, region.name][1]) for kmod, column in runs.items() for label in column]
            shown = _window_scale(row_axes, max(pinned), min((p for p in pinned if p), default=1), region.size, MiB)
            on_scale.append(shown)
            for c, (kmod, ax) in enumerate(zip(runs, row_axes, strict=True)):
                where = f"{_heading(kmod)} · " if kmod is not None else ""
                size = _size(region.size)
                ax.set_title(f"{where}{region.name} window: {size}, dashed" if shown else
                             f"{where}{region.name} window ({size}: off the scale)")  # fmt: skip
                if c == 0:
                    ax.set_ylabel("pinned (busy + lazy), MiB" + (", log scale" if shown else ""))
                else:
                    ax.tick_params(labelleft=False)
                if k == len(regions) - 1:
                    ax.set_xlabel("time since the first uevent (ms)")
                else:
                    ax.tick_params(labelbottom=False)
        extra: list[tuple[Any, str]] = [(Line2D([], [], **_WINDOW_LINE), "window size")] if any(on_scale) else []
        if peaks:
            extra += _peak_map(fig.add_subplot(grid[len(regions), :]), peaks, layout, window)
        _legend(fig, styles, twins, extra)
        fig.suptitle(title or f"{sum(map(len, runs.values()))} runs: pinned = busy + lazily freed + pooled")
    return fig


def _steps(ax: Any, xs: Sequence[float], ys: Sequence[float], style: Mapping[str, Any], n: int, end: float,
           gid: str) -> None:  # fmt: skip
    """A step curve (each value holding until the next point) with markers every twelfth of ``end``.

    The markers sit at fixed instants, shifted a little per label ``n`` so curves that run close keep
    their markers apart, and not on the points: a curve that changes thousands of times would be a bar
    of markers.
    """
    ax.step(xs, ys, where="post", gid=gid, **{k: v for k, v in style.items() if "marker" not in k})
    at = [t for k in range(12) if xs[0] <= (t := end * (k + 0.25 + 0.09 * (n % 8)) / 12) <= xs[-1]]
    ax.plot(at, [ys[bisect.bisect_right(xs, t) - 1] for t in at], linestyle="none",
            **{k: v for k, v in style.items() if k != "linestyle"})  # fmt: skip


def _heading(kmod: int | None) -> str:
    return f"kmod {kmod}" if kmod is not None else ""


def _peak_map(ax: Any, at_peak: Mapping[int | None, Mapping[str, VmapSpace]], layout: Layout,
              window: str) -> list[tuple[Any, str]]:  # fmt: skip
    """Each run's ``window`` at its peak, cut to the part any run uses; the legend's handles for it.

    Runs whose maps are the same share a row, named beside it with what the row pins.
    """
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    w = layout.region(window) if window in (r.name for r in layout.regions) else layout.vmalloc
    kinds: tuple[tuple[str, str, dict[str, Any]], ...] = (
        ("busy", "busy_ranges", {"facecolor": "#404040"}),
        ("lazily freed", "lazy_ranges", {"facecolor": "#E69F00", "hatch": "////", "edgecolor": "#7a5500"}),
        ("in a node pool", "pooled_ranges", {"facecolor": "white", "hatch": "xxx", "edgecolor": "#009E73"}),
    )
    headed = len(at_peak) > 1
    shown: list[tuple[str, tuple[Any, ...], list[str]]] = []
    groups: list[int] = []  # where each kmod's rows end
    for kmod, column in at_peak.items():
        seen: dict[tuple[Any, ...], int] = {}
        for label, space in column.items():
            spans = tuple(tuple(getattr(space, ranges)(w)) for _, ranges, _ in kinds)
            if (kmod, spans) in seen:
                shown[seen[kmod, spans]][2].append(label)
                continue
            seen[kmod, spans] = len(shown)
            shown.append((f"{_heading(kmod)} · {label}" if headed else label, spans, []))
        groups.append(len(shown))
    used = max((e - w.start for _, spans, _ in shown for ranges in spans for _, e in ranges), default=0)
    whole = used > w.size / 2
    # the notes go right of the bars: past the used part, or past the window's end, drawn as a line
    right = w.size / MiB * 1.55 if whole else _nice(used / MiB * 1.6)
    drawn: set[str] = set()
    for y, (_, spans, same) in enumerate(shown):
        for (kind, _, style), ranges in zip(kinds, spans, strict=True):
            if ranges:
                ax.broken_barh([((s - w.start) / MiB, (e - s) / MiB) for s, e in ranges], (y - 0.38, 0.76),
                               linewidth=0.3, **style)  # fmt: skip
                drawn.add(kind)
        end = max((e - w.start for ranges in spans for _, e in ranges), default=0) / MiB
        pinned = sum(e - s for ranges in spans for s, e in ranges)
        note = textwrap.fill(f"{_size(pinned, 3)} pinned" + (f"; also {', '.join(same)}" if same else ""), 48,
                             break_on_hyphens=False)  # fmt: skip
        ax.text(min(end, right) + right * 0.01, y, note, va="center", fontsize=6.5, clip_on=False)
    for y in groups[:-1]:
        ax.axhline(y - 0.5, color="grey", linewidth=0.5)
    if whole:
        ax.axvline(w.size / MiB, color="black", linewidth=0.8)
        ax.set_xticks([t for t in MaxNLocator(6).tick_values(0, w.size / MiB) if 0 <= t <= w.size / MiB])
    ax.set_xlim(0, right)
    ax.set_ylim(len(shown) - 0.5, -0.5)  # the first run on top, as the legend reads
    ax.set_yticks(range(len(shown)), [name for name, _, _ in shown], fontsize=6.5)
    ax.grid(False)
    ax.set_title(f"{w.name} window at each run's peak" + (f": all {_size(w.size)}, to the line (white: free)"
                 if whole else f": its first {right:g} MiB of {_size(w.size)} (white: free)"))  # fmt: skip
    ax.set_xlabel(f"offset in the {w.name} window (MiB)")
    return [(Patch(label=kind, linewidth=0.3, **style), kind) for kind, _, style in kinds if kind in drawn]


def _nice(x: float) -> float:
    """The least round number (1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of ten) at or above ``x``."""
    if x <= 0:
        return 1.0
    base = 10.0 ** math.floor(math.log10(x))
    return next(m * base for m in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10) if m * base >= x)


def pinned_over_time(
    results: Runs,
    path: str,
    at_peak: Mapping[str, VmapSpace] | Mapping[int | None, Mapping[str, VmapSpace]] | None = None,
    window: str = "modules",
    *,
    layout: Layout | None = None,
    title: str = "",
) -> None:
    """Write :func:`boot_figure` to a PNG/SVG/PDF file, all or nothing.

    ``results`` maps a label (e.g. the pipeline name) to its :class:`~vmapsim.loader.Result`, or a kmod
    version to such a mapping; ``at_peak`` (the same shape, each run's space at its peak, see
    ``simulate(until=)``) adds the map of ``window``.  Raises :class:`InvalidArgument` for a bad file
    name or when matplotlib is not installed.  Runtime complexity: O(total samples + areas).
    """
    target = plot_path(path)
    plt = _pyplot()
    fig = boot_figure(results, layout=layout, at_peak=at_peak, window=window, title=title)
    _save(fig, plt, target, path)


#: A metric's axis label in words (others: its name in words).
_METRIC_WORDS = {"peak_modules": "peak pinned in the module window", "peak_vmalloc": "peak pinned in the vmalloc "
                 "window", "wasted_bytes": "wasted by failed loads, MODULE_STATS"}  # fmt: skip


def sweep_figure(
    rows: Sequence[Mapping[str, Any]],
    *,
    metrics: Sequence[str] = SWEEP_METRICS,
    window: int | None = None,
    exhaustion: Mapping[str, int] | None = None,
    title: str = "",
) -> Any:
    """The matplotlib Figure of :func:`sweep_curves`: a row of panels per metric against CPUs and a column
    per kmod (and machine, when the sweep has several), one line per load path (the seeds' median, a
    marker at each CPU count) with the seeds' min–max band, drawn from
    :func:`~vmapsim.report.sweep_series`.  ``window`` (bytes) is the module window's size: on the
    ``peak_modules`` row, a dashed line on a log axis where the curves reach a fiftieth of it, else named
    in the title; ``exhaustion`` (load path -> CPU count) marks where each runs out.  ``rows`` are a
    sweep's (:class:`vmapsim.sweeps.Table` ``.rows``).  Runtime complexity: O(rows log rows).
    """
    from matplotlib.lines import Line2D

    plt = _pyplot()
    if not rows:
        raise InvalidArgument("nothing to plot")
    points = sweep_series(rows, metrics)
    curves: dict[tuple[Any, Any], dict[str, dict[str, list[Mapping[str, Any]]]]] = {}
    for p in points:
        column = curves.setdefault((p["machine"], p["kmod"]), {})
        column.setdefault(p["pipeline"], {}).setdefault(p["metric"], []).append(p)
    machines = len({machine for machine, _ in curves})

    def heading(machine: str, kmod: int | None) -> str:
        return ", ".join([machine] * (machines > 1) + [f"kmod {kmod}" if kmod is not None else "its kmod"])

    headings = {key: heading(*key) if len(curves) > 1 else "" for key in curves}
    styles = _styles(dict.fromkeys(label for column in curves.values() for label in column))
    twins = {headings[key]: _twins({label: tuple((m, tuple((p["cpus"], p["median"], p["min"], p["max"])
                                                           for p in curve[m])) for m in metrics)
                                    for label, curve in column.items()})
             for key, column in curves.items()}  # fmt: skip
    extra: list[tuple[Any, str]] = []
    with plt.rc_context(_RC):
        size = (max(6.2, 3.5 * len(curves) + 0.6), 2.3 * len(metrics) + 1)
        fig, axes = plt.subplots(len(metrics), len(curves), figsize=size, sharex=True, sharey="row", squeeze=False,
                                 layout="constrained")  # fmt: skip
        for r, (row_axes, metric) in enumerate(zip(axes, metrics, strict=True)):
            values = [p for column in curves.values() for curve in column.values() for p in curve[metric]]
            top = max(p["max"] for p in values)
            is_bytes = METRICS[metric].unit == "bytes"
            unit, unit_name = ((GiB, "GiB") if top >= 4 * GiB else (MiB, "MiB")) if is_bytes else (1, METRICS[
                metric].unit)  # fmt: skip
            for ax, (key, column) in zip(row_axes, curves.items(), strict=True):
                for label in twins[headings[key]]:
                    curve = column[label][metric]
                    cpus = [p["cpus"] for p in curve]
                    ax.plot(cpus, [p["median"] / unit for p in curve], gid=f"{headings[key]}/{label}/{metric}",
                            **styles[label])  # fmt: skip
                    ax.fill_between(cpus, [p["min"] / unit for p in curve], [p["max"] / unit for p in curve],
                                    color=styles[label]["color"], alpha=0.15, linewidth=0)  # fmt: skip
                    if exhaustion and label in exhaustion:
                        ax.axvline(exhaustion[label], color=styles[label]["color"], linestyle=":", linewidth=0.9)
            words = _METRIC_WORDS.get(metric, metric.replace("_", " "))
            scale, note = "", ""
            if window and metric == "peak_modules":
                if _window_scale(row_axes, top, min(p["median"] for p in values), window, unit):
                    scale = ", log scale"
                    extra.append((Line2D([], [], **_WINDOW_LINE), f"module window size ({_size(window)})"))
                else:
                    note = f"the module window's {_size(window)}: off the scale"
            else:
                row_axes[0].set_ylim(bottom=0)
            row_axes[0].set_ylabel(textwrap.fill(f"{words} ({unit_name}{scale})", 28))
            for ax, key in zip(row_axes, curves, strict=True):
                ax.set_title(" · ".join(filter(None, [headings[key] if r == 0 else "", note])))
        cpus = sorted({p["cpus"] for p in points})
        for ax in axes[-1]:
            ax.set_xlabel("CPUs")
            if len(cpus) <= 12:  # each CPU count swept, to read the points off
                ax.set_xticks(cpus)
        _legend(fig, styles, twins, extra)
        fig.suptitle(title or f"{len(rows)} runs: the seeds' median, min–max band")
    return fig


def sweep_curves(
    rows: Sequence[Mapping[str, Any]],
    path: str,
    *,
    metrics: Sequence[str] = SWEEP_METRICS,
    window: int | None = None,
    exhaustion: Mapping[str, int] | None = None,
    title: str = "",
) -> None:
    """Write :func:`sweep_figure` to a PNG/SVG/PDF file, all or nothing: each metric against CPUs, one
    line per load path (the seed median) with the seeds' min–max band; ``window`` (bytes) is the module
    window's size, ``exhaustion`` (load path -> CPU count) marks where each runs out.  ``rows`` are a
    sweep's (:class:`vmapsim.sweeps.Table` ``.rows``).  Runtime complexity: O(rows log rows).
    """
    target = plot_path(path)
    plt = _pyplot()
    fig = sweep_figure(rows, metrics=metrics, window=window, exhaustion=exhaustion, title=title)
    _save(fig, plt, target, path)


#: Each caller as a panel names it.
_CALLER_WORDS = {"kernel_read_file": "kernel_read_file(): the module file read",
                 "copy_module_from_user": "copy_module_from_user(): init_module(2)'s image",
                 "module_decompress": "module_decompress(): the decompressor's scratch",
                 "vmap": "vmap() of the decompressed pages", "module_memory": "module memory (text, data, init...)",
                 "execmem_chunk": "execmem's 2 MiB ROX cache chunks"}  # fmt: skip


def histogram_figure(results: Runs, *, title: str = "") -> Any:
    """The matplotlib Figure of :func:`allocation_histograms`: for each kmod and caller (a row of two
    panels), how many allocations fell in each power-of-two bucket of size and of lifetime, one line per
    load path in :func:`boot_figure`'s styles, counts on a log axis -- what bpftrace's ``hist()`` of
    ``__vmalloc_node_range()`` sizes and of alloc-to-free times per stack prints, over the whole run.
    Curves of a panel equal to an earlier one's are drawn once and named over the panel; the lifetime
    panel says how many areas were never freed (a live module's memory).  Drawn from
    :func:`~vmapsim.report.histogram_series`.  Runtime complexity: O(allocations log allocations).
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    plt = _pyplot()
    runs = by_kmod(results)
    buckets: dict[tuple[Any, str, str, str], dict[int, int]] = {}  # (kmod, caller, quantity, label) -> high -> n
    for row in histogram_series(runs):
        key = (row["kmod"], row["caller"], row["quantity"], row["pipeline"])
        buckets.setdefault(key, {})[row["high"] or 0] = row["count"]  # held_at_end has no bucket: 0
    callers = list(dict.fromkeys(CALLERS.values()))
    panels = [(kmod, caller) for kmod in runs for caller in callers
              if any((kmod, caller, "size_bytes", label) in buckets for label in runs[kmod])]  # fmt: skip
    labels = list(dict.fromkeys(label for column in runs.values() for label in column))
    styles = _styles(labels)
    ticks = {"size_bytes": lambda v, _: _size(v).replace(" ", "\u2009"),
             "lifetime_us": lambda v, _: f"{v:g}\u2009µs" if v < 1000 else f"{v / 1000:g}\u2009ms"}  # fmt: skip
    with plt.rc_context(_RC):
        fig = plt.figure(figsize=(7.2, 1.75 * len(panels) + 1.2), layout="constrained")
        rows = fig.subfigures(len(panels), 1, squeeze=False)[:, 0]  # a row per caller, titled across its panels
        axes: list[list[Any]] = []
        for (kmod, caller), row in zip(panels, rows, strict=True):
            row_axes = row.subplots(1, 2)
            for c, ax in enumerate(row_axes):
                if axes:
                    ax.sharex(axes[0][c])
                if c == 1:
                    ax.sharey(row_axes[0])
            axes.append(list(row_axes))
            column = runs[kmod]
            for ax, quantity in zip(row_axes, ("size_bytes", "lifetime_us"), strict=True):
                counts = {label: buckets.get((kmod, caller, quantity, label), {}) for label in column}
                same = _twins({label: tuple(sorted(c.items())) for label, c in counts.items() if c})
                for label in same:
                    # bucket [high / 2, high): under 1 µs, [0, 1) is drawn from 0.5 on the log axis
                    top = [int(math.log2(h)) for h in sorted(counts[label])]
                    edges = [2.0**k for k in range(top[0] - 1, top[-1] + 1)]
                    values = [counts[label].get(int(2 * e), 0) for e in edges[:-1]]
                    ax.stairs(values, edges, color=styles[label]["color"], linestyle=styles[label]["linestyle"],
                              linewidth=1.1, gid=f"{kmod}/{caller}/{quantity}/{label}")  # fmt: skip
                    ax.plot([e * math.sqrt(2) for e, v in zip(edges, values, strict=False) if v],
                            [v for v in values if v], linestyle="none",
                            **{k: v for k, v in styles[label].items() if k != "linestyle"})  # fmt: skip
                ax.set_xscale("log", base=2 if quantity == "size_bytes" else 10)
                if quantity == "lifetime_us":  # decades: 10 µs, 100 µs, 1 ms, not 1.024 ms
                    ax.xaxis.set_major_locator(LogLocator(10))
                ax.xaxis.set_major_formatter(FuncFormatter(ticks[quantity]))
                ax.xaxis.set_minor_formatter(NullFormatter())
                ax.set_yscale("log")
                ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                ax.yaxis.set_minor_formatter(NullFormatter())
                notes = [" = ".join([label, *others]) for label, others in same.items() if others]
                if quantity == "lifetime_us":
                    notes += _never_freed({label: buckets.get((kmod, caller, "held_at_end", label), {}).get(0, 0)
                                           for label in column})  # fmt: skip
                ax.set_title(textwrap.fill("; ".join(notes), 60, break_on_hyphens=False), fontsize=6)
            where = f"{_heading(kmod)}: " if kmod is not None else ""
            row.suptitle(f"{where}{_CALLER_WORDS[caller]}", x=0.01, ha="left", fontsize=8)
            row_axes[0].set_ylabel("allocations")
        for ax in axes[-1]:
            ax.set_xlabel("allocation size (guard page included)" if ax is axes[-1][0] else
                          "lifetime, allocation to free")  # fmt: skip
        _legend(fig, styles, {"": {label: [] for label in labels}})
        fig.suptitle(title or "allocation sizes and lifetimes per caller, power-of-two buckets, over the run")
    return fig


def _never_freed(held: Mapping[str, int]) -> list[str]:
    """What the lifetime panel says of areas never freed: one count per group of runs that agree."""
    if not any(held.values()):
        return []
    groups: dict[int, list[str]] = {}
    for label, n in held.items():
        groups.setdefault(n, []).append(label)
    if len(groups) == 1:
        return [f"never freed: {next(iter(groups))} in every run"]
    most = max(groups, key=lambda n: len(groups[n]))
    return [
        "never freed: "
        + ", ".join(f"{n} in {', '.join(names)}" for n, names in groups.items() if n != most)
        + f", {most} in the others"
    ]


def allocation_histograms(results: Runs, path: str, *, title: str = "") -> None:
    """Write :func:`histogram_figure` to a PNG/SVG/PDF file, all or nothing.  ``results`` as
    :func:`boot_figure` takes them.  Runtime complexity: O(allocations log allocations).
    """
    target = plot_path(path)
    plt = _pyplot()
    fig = histogram_figure(results, title=title)
    _save(fig, plt, target, path)
