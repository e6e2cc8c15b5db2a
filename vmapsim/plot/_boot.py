"""The boot figure: pinned bytes over time per window and kmod, and the module window at each run's peak."""

from __future__ import annotations

import bisect
import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from vmapsim.layouts import Layout
from vmapsim.plot._common import (
    STYLE,
    WINDOW_LINE,
    figure_legend,
    heading_of,
    line_styles,
    load_pyplot,
    plot_path,
    save_figure,
    scaled_window,
    size_text,
    twin_curves,
)
from vmapsim.report import Runs, by_kmod, pinned_series
from vmapsim.space import VmapSpace
from vmapsim.units import MiB

__all__ = ["boot_figure", "pinned_over_time"]


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

    plt = load_pyplot()
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
    styles = line_styles(labels)
    regions = layout.regions
    twins = {heading_of(kmod): twin_curves({label: tuple((tuple(x), tuple(y)) for w in regions
                                                  for x, y in [curves[kmod, label, w.name]])
                                     for label in column})
             for kmod, column in runs.items()}  # fmt: skip
    peaks = by_kmod(at_peak) if at_peak else {}
    end = max(row["time_ms"] for row in rows)
    map_rows = sum(len(column) for column in peaks.values())
    with plt.rc_context(STYLE):
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
                for label in twins[heading_of(kmod)]:
                    xs, ys = curves[kmod, label, region.name]
                    _steps(ax, xs, [y / MiB for y in ys], styles[label], labels.index(label), end,
                           gid=f"{kmod}/{label}/{region.name}")  # fmt: skip
                row_axes.append(ax)
            axes.append(row_axes)
            pinned = [max(curves[kmod, label, region.name][1]) for kmod, column in runs.items() for label in column]
            shown = scaled_window(row_axes, max(pinned), min((p for p in pinned if p), default=1), region.size, MiB)
            on_scale.append(shown)
            for c, (kmod, ax) in enumerate(zip(runs, row_axes, strict=True)):
                where = f"{heading_of(kmod)} · " if kmod is not None else ""
                size = size_text(region.size)
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
        extra: list[tuple[Any, str]] = [(Line2D([], [], **WINDOW_LINE), "window size")] if any(on_scale) else []
        if peaks:
            extra += _peak_map(fig.add_subplot(grid[len(regions), :]), peaks, layout, window)
        figure_legend(fig, styles, twins, extra)
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
            shown.append((f"{heading_of(kmod)} · {label}" if headed else label, spans, []))
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
        note = textwrap.fill(f"{size_text(pinned, 3)} pinned" + (f"; also {', '.join(same)}" if same else ""), 48,
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
    ax.set_title(f"{w.name} window at each run's peak" + (f": all {size_text(w.size)}, to the line (white: free)"
                 if whole else f": its first {right:g} MiB of {size_text(w.size)} (white: free)"))  # fmt: skip
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
    plt = load_pyplot()
    fig = boot_figure(results, layout=layout, at_peak=at_peak, window=window, title=title)
    save_figure(fig, plt, target, path)


#: A metric's axis label in words (others: its name in words).
