"""Plots of simulation results (needs the ``plot`` extra: ``pip install 'vmapsim[plot]'``).

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
from vmapsim.loader.result import Result
from vmapsim.space import VmapSpace

__all__ = ["pinned_over_time", "plot_path", "sweep_curves"]


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
        raise InvalidArgument("plotting needs matplotlib: pip install 'vmapsim[plot]'") from None
    return plt


def pinned_over_time(
    results: Mapping[str, Result], path: str, at_peak: Mapping[str, VmapSpace] | None = None, window: str = "modules"
) -> None:
    """Write a PNG/SVG/PDF of pinned bytes over time, one line per run, one panel per window.

    ``results`` maps a label (e.g. the pipeline name) to its :class:`Result`;
    ``at_peak`` (label -> the space at that run's peak, see ``simulate(until=)``)
    adds a map of ``window`` at each run's peak: busy areas in blue, lazily freed
    ones in orange.  Raises :class:`InvalidArgument` when matplotlib is not
    installed.  Runtime complexity: O(total samples + areas).
    """
    target = plot_path(path)
    plt = _pyplot()
    if not results:
        raise InvalidArgument("nothing to plot")
    regions = [r.name for r in next(iter(results.values())).space.layout.regions]
    panels = len(regions) + (1 if at_peak else 0)
    fig, axes = plt.subplots(panels, 1, figsize=(9, 3.2 * panels), squeeze=False)
    for label, res in results.items():
        times = [t * 1000 for t, _ in res.pinned_over_time]
        for k in range(len(regions)):
            axes[k][0].step(times, [v[k] / (1 << 20) for _, v in res.pinned_over_time], where="post", label=label)
    for k, name in enumerate(regions):
        ax = axes[k][0]
        ax.set_title(f"{name} window: pinned (busy + lazy + pooled)")
        ax.set_xlabel("time (ms)")
        ax.set_ylabel("MiB")
        ax.legend(fontsize="small")
    if at_peak:
        ax = axes[-1][0]
        for row, space in enumerate(at_peak.values()):
            w = (
                space.layout.region(window)
                if window in (r.name for r in space.layout.regions)
                else space.layout.vmalloc
            )
            for ranges, color in ((space.busy_ranges(w), "tab:blue"), (space.lazy_ranges(w), "tab:orange")):
                spans = [((s - w.start) / (1 << 20), (e - s) / (1 << 20)) for s, e in ranges]
                ax.broken_barh(spans, (row - 0.4, 0.8), color=color)
        ax.set_yticks(range(len(at_peak)), list(at_peak))
        ax.set_title(f"{window} window at each run's peak: busy (blue), lazily freed (orange)")
        ax.set_xlabel(f"offset in the {window} window (MiB)")
    fig.tight_layout()
    tmp = target.with_name(f".{target.name}.part{target.suffix}")
    try:  # all or nothing: a partial image never takes the name
        fig.savefig(tmp, format=target.suffix[1:])
        os.replace(tmp, target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise InvalidArgument(f"cannot write {path}: {e.strerror}") from None
    finally:
        plt.close(fig)


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
    (:class:`vmapsim.sweep.Table` ``.rows``).  Runtime complexity: O(rows log rows).
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
    fig.savefig(str(target))
    plt.close(fig)
