"""Plots of simulation results (needs the ``plot`` extra: ``pip install 'vmapsim[plot]'``).

>>> import importlib.util
>>> importlib.util.find_spec("vmapsim.plot") is not None
True
"""

from __future__ import annotations

from collections.abc import Mapping

from vmapsim.errors import InvalidArgument
from vmapsim.loader.simulate import Result

__all__ = ["pinned_over_time"]


def pinned_over_time(results: Mapping[str, Result], path: str) -> None:
    """Write a PNG/SVG/PDF of pinned bytes over time, one line per run, one panel per window.

    ``results`` maps a label (e.g. the pipeline name) to its :class:`Result`.
    Raises :class:`InvalidArgument` when matplotlib is not installed.
    Runtime complexity: O(total samples).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InvalidArgument("plotting needs matplotlib: pip install 'vmapsim[plot]'") from None
    if not results:
        raise InvalidArgument("nothing to plot")
    regions = [r.name for r in next(iter(results.values())).space.layout.regions]
    fig, axes = plt.subplots(len(regions), 1, figsize=(9, 3.2 * len(regions)), squeeze=False)
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
    fig.tight_layout()
    try:
        fig.savefig(path)
    except OSError as e:
        raise InvalidArgument(f"cannot write {path}: {e.strerror}") from None
    finally:
        plt.close(fig)
