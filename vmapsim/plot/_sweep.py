"""The sweep figure: each metric against CPUs per load path and kmod, the seeds' median and band."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from vmapsim.errors import InvalidArgument
from vmapsim.loader import METRICS
from vmapsim.plot._common import (
    STYLE,
    WINDOW_LINE,
    figure_legend,
    line_styles,
    load_pyplot,
    plot_path,
    save_figure,
    scaled_window,
    size_text,
    twin_curves,
)
from vmapsim.report import SWEEP_METRICS, sweep_series
from vmapsim.units import GiB, MiB

__all__ = ["sweep_curves", "sweep_figure"]


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

    plt = load_pyplot()
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
    styles = line_styles(dict.fromkeys(label for column in curves.values() for label in column))
    twins = {headings[key]: twin_curves({label: tuple((m, tuple((p["cpus"], p["median"], p["min"], p["max"])
                                                           for p in curve[m])) for m in metrics)
                                    for label, curve in column.items()})
             for key, column in curves.items()}  # fmt: skip
    extra: list[tuple[Any, str]] = []
    with plt.rc_context(STYLE):
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
                if scaled_window(row_axes, top, min(p["median"] for p in values), window, unit):
                    scale = ", log scale"
                    extra.append((Line2D([], [], **WINDOW_LINE), f"module window size ({size_text(window)})"))
                else:
                    note = f"the module window's {size_text(window)}: off the scale"
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
        figure_legend(fig, styles, twins, extra)
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
    plt = load_pyplot()
    fig = sweep_figure(rows, metrics=metrics, window=window, exhaustion=exhaustion, title=title)
    save_figure(fig, plt, target, path)


#: Each caller as a panel names it.
