"""Plots of simulation results (needs the ``plot`` extra: ``pip install '.[plot]'``).

>>> import importlib.util
>>> importlib.util.find_spec("vmapsim.plot") is not None
True
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vmapsim.errors import InvalidArgument
from vmapsim.layouts import Layout
from vmapsim.loader.result import Result
from vmapsim.space import VmapSpace
from vmapsim.units import GiB, MiB

__all__ = ["boot_figure", "pinned_over_time", "plot_path", "sweep_curves"]


def plot_path(path: str) -> Path:
    """``path`` as the image file to write; :class:`InvalidArgument` unless it ends in .png, .svg or .pdf.

    Runtime complexity: O(1).

    >>> plot_path("peaks.svg").suffix
    '.svg'
    """
    target = Path(path)
    if target.suffix.lower() not in (".png", ".svg", ".pdf") or target.is_dir():
        raise InvalidArgument(f"plot file {path}: expected a file name ending in .png, .svg or .pdf")
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
            fig.savefig(tmp, format=target.suffix[1:])
        os.replace(tmp, target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise InvalidArgument(f"cannot write {path}: {e.strerror}") from None
    finally:
        plt.close(fig)


# Line styles that stay apart where lines cross or run close (the colours alone repeat after ten).
_STYLES = ("-", "--", "-.", ":")


def boot_figure(
    results: Mapping[str, Result] | Mapping[str, Mapping[str, Result]],
    *,
    layout: Layout | None = None,
    at_peak: Mapping[str, VmapSpace] | None = None,
    window: str = "modules",
    title: str = "",
) -> Any:
    """The matplotlib Figure of :func:`pinned_over_time` (to look at, or to save yourself).

    ``results`` maps a label (a pipeline's name) to its :class:`Result`, or a column's heading (e.g.
    ``"kmod 30"``) to such a mapping: small multiples, a column each, the same label in the same colour
    and line style in every column.  One row of panels per window: pinned bytes over time (ms); a
    curve equal to an earlier one in its column is drawn once and the panel's title names both; the
    window's size as a dashed line where it is on the scale (else in the title); one legend.
    ``at_peak`` (label -> space, the labels as ``"<label>, <heading>"`` with columns) adds a map of
    ``window`` at each run's peak at the window's own scale: busy areas, lazily freed ones, VAs parked
    in 6.9+ node pools, white where free.  ``layout`` defaults to the first result's space's.
    Runtime complexity: O(total samples + areas).
    """
    plt = _pyplot()
    if not results:
        raise InvalidArgument("nothing to plot")
    first_value = next(iter(results.values()))
    columns: dict[str, Mapping[str, Result]] = (
        {"": results} if isinstance(first_value, Result) else dict(results)  # type: ignore[dict-item, arg-type]
    )
    if not all(columns.values()):
        raise InvalidArgument("nothing to plot in a column")
    first = next(iter(next(iter(columns.values())).values()))
    if layout is None:
        if first.space is None:
            raise InvalidArgument("a Result read back from plain data has no space: pass layout=")
        layout = first.space.layout
    regions = layout.regions
    labels = list(dict.fromkeys(label for col in columns.values() for label in col))
    style = {label: (f"C{n % 10}", _STYLES[n % len(_STYLES)]) for n, label in enumerate(labels)}
    rows = len(regions) + (1 if at_peak else 0)
    fig, axes = plt.subplots(rows, len(columns), figsize=(6.5 * len(columns) + 1.5, 2.9 * rows + 0.6),
                             squeeze=False)  # fmt: skip
    for c, (heading, col) in enumerate(columns.items()):
        drawn: dict[tuple[tuple[float, tuple[int, ...]], ...], str] = {}
        same: list[str] = []
        for label, res in col.items():  # identical curves would hide each other: draw each once
            if res.pinned_over_time in drawn:
                same.append(f"{label} = {drawn[res.pinned_over_time]}")
                continue
            drawn[res.pinned_over_time] = label
            color, line = style[label]
            for k in range(len(regions)):
                axes[k][c].step([t * 1000 for t, _ in res.pinned_over_time],
                                [v[k] / MiB for _, v in res.pinned_over_time], where="post", label=label,
                                color=color, linestyle=line, linewidth=1.6)  # fmt: skip
        for k, region in enumerate(regions):
            ax = axes[k][c]
            top = max((v[k] for res in col.values() for _, v in res.pinned_over_time), default=0) / MiB
            size = region.size / MiB
            where = f"{heading}: " if heading else ""
            if top >= size / 50:  # on the scale: draw it
                ax.axhline(size, color="black", linestyle=(0, (6, 3)), linewidth=1, label="window size")
                ax.set_title(f"{where}{region.name} window ({_size(region.size)}), pinned", fontsize="medium")
            else:
                ax.set_title(f"{where}{region.name} window pinned (its size, {_size(region.size)}, is off the "
                             "scale)", fontsize="medium")  # fmt: skip
            ax.set_xlabel("time since the first uevent (ms)")
            ax.set_ylabel("MiB (busy + lazy + pooled)")
            ax.set_ylim(bottom=0)
        if same:
            axes[0][c].text(0.99, 0.97, "same curve: " + "; ".join(same), transform=axes[0][c].transAxes,
                            ha="right", va="top", fontsize="x-small", wrap=True)  # fmt: skip
    if at_peak:
        for c in range(1, len(columns)):
            axes[-1][c].remove()
        grid = axes[-1][0].get_gridspec()
        if len(columns) > 1:
            axes[-1][0].remove()
            axes[-1][0] = fig.add_subplot(grid[-1, :])
        _peak_map(axes[-1][0], at_peak, window)
    found: dict[str, Any] = {}
    for ax in fig.axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            found.setdefault(lab, h)
    order = [lab for lab in labels if lab in found] + [lab for lab in found if lab not in labels]
    fig.legend([found[lab] for lab in order], order, loc="center right", fontsize="small", frameon=False)
    fig.suptitle(title or f"{sum(map(len, columns.values()))} runs")
    width = 6.5 * len(columns) + 1.5
    fig.tight_layout(rect=(0, 0, 1 - 1.9 / width, 1))
    return fig


def _peak_map(ax: Any, at_peak: Mapping[str, VmapSpace], window: str) -> None:
    """Each run's ``window`` at its peak, at the window's own scale (offsets from its start)."""
    kinds = (("busy", "tab:blue", "busy_ranges"), ("lazily freed", "tab:orange", "lazy_ranges"),
             ("in a node pool", "tab:green", "pooled_ranges"))  # fmt: skip
    w = None
    for row, space in enumerate(at_peak.values()):
        w = space.layout.region(window) if window in (r.name for r in space.layout.regions) else space.layout.vmalloc
        for name, color, ranges in kinds:
            spans = [((s - w.start) / MiB, (e - s) / MiB) for s, e in getattr(space, ranges)(w)]
            if spans:
                ax.broken_barh(spans, (row - 0.4, 0.8), color=color, label=name)
    assert w is not None
    ax.set_xlim(0, w.size / MiB)
    ax.set_ylim(-0.6, len(at_peak) - 0.4)
    ax.set_yticks(range(len(at_peak)), list(at_peak), fontsize="small")
    ax.set_title(f"{w.name} window at each run's peak, whole window (white: free)")
    ax.set_xlabel(f"offset in the {w.name} window (MiB)")


def _size(n: int) -> str:
    for unit, scale in (("TiB", 1024 * GiB), ("GiB", GiB)):
        if n >= scale:
            return f"{n / scale:.4g} {unit}"
    return f"{n / MiB:.4g} MiB"


def pinned_over_time(
    results: Mapping[str, Result] | Mapping[str, Mapping[str, Result]],
    path: str,
    at_peak: Mapping[str, VmapSpace] | None = None,
    window: str = "modules",
    *,
    layout: Layout | None = None,
    title: str = "",
) -> None:
    """Write :func:`boot_figure` to a PNG/SVG/PDF file, all or nothing.

    ``results`` maps a label (e.g. the pipeline name) to its :class:`Result`, or a column heading to
    such a mapping; ``at_peak`` (label -> the space at that run's peak, see ``simulate(until=)``) adds
    the map of ``window``.  Raises
    :class:`InvalidArgument` for a bad file name or when matplotlib is not installed.
    Runtime complexity: O(total samples + areas).
    """
    target = plot_path(path)
    plt = _pyplot()
    fig = boot_figure(results, layout=layout, at_peak=at_peak, window=window, title=title)
    _save(fig, plt, target, path)


def sweep_curves(
    rows: Sequence[Mapping[str, Any]],
    path: str,
    *,
    metrics: Sequence[str] = ("peak_modules", "wasted_bytes"),
    window: int | None = None,
    exhaustion: Mapping[str, int] | None = None,
    title: str = "",
) -> None:
    """Write a PNG/SVG/PDF of each metric against CPUs, one line per load path (the seed median) with the
    seeds' min–max band; ``window`` (bytes) draws the module window's size on the peak panel, and
    ``exhaustion`` (load path -> CPU count) marks where each runs out.  ``rows`` are a sweep's
    (:class:`vmapsim.sweeps.Table` ``.rows``).  Runtime complexity: O(rows log rows).
    """
    target = plot_path(path)
    plt = _pyplot()
    if not rows:
        raise InvalidArgument("nothing to plot")
    fig, axes = plt.subplots(len(metrics), 1, figsize=(9, 3.4 * len(metrics)), squeeze=False)
    paths = list(dict.fromkeys(str(r["pipeline"]) for r in rows))
    for ax, metric in zip(axes[:, 0], metrics, strict=True):
        for label in paths:
            by_cpus: dict[int, list[float]] = {}
            for r in rows:
                if r["pipeline"] == label:
                    by_cpus.setdefault(int(r["cpus"]), []).append(float(r[metric]) / 2**20)
            cpus = sorted(by_cpus)
            line = ax.plot(cpus, [statistics.median(by_cpus[c]) for c in cpus], marker="o", label=label)[0]
            ax.fill_between(cpus, [min(by_cpus[c]) for c in cpus], [max(by_cpus[c]) for c in cpus],
                            color=line.get_color(), alpha=0.2)  # fmt: skip
            if exhaustion and label in exhaustion:
                ax.axvline(exhaustion[label], color=line.get_color(), linestyle=":")
        if window and metric.startswith("peak"):
            ax.axhline(window / 2**20, color="black", linestyle="--", label="window size")
        ax.set_xlabel("CPUs")
        ax.set_ylabel(f"{metric} (MiB)")
        ax.legend(fontsize="small")
    fig.suptitle(title or f"{len(rows)} runs")
    fig.tight_layout()
    _save(fig, plt, target, path)
