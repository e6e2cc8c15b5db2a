"""The histogram figure: allocation sizes and lifetimes per caller, as bpftrace's hist() counts them."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping
from typing import Any

from vmapsim.plot._common import (
    STYLE,
    figure_legend,
    heading_of,
    line_styles,
    load_pyplot,
    plot_path,
    save_figure,
    size_text,
    twin_curves,
)
from vmapsim.report import CALLERS, Runs, by_kmod, histogram_series

__all__ = ["allocation_histograms", "histogram_figure"]


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

    plt = load_pyplot()
    runs = by_kmod(results)
    buckets: dict[tuple[Any, str, str, str], dict[int, int]] = {}  # (kmod, caller, quantity, label) -> high -> n
    for row in histogram_series(runs):
        key = (row["kmod"], row["caller"], row["quantity"], row["pipeline"])
        buckets.setdefault(key, {})[row["high"] or 0] = row["count"]  # held_at_end has no bucket: 0
    callers = list(dict.fromkeys(CALLERS.values()))
    panels = [(kmod, caller) for kmod in runs for caller in callers
              if any((kmod, caller, "size_bytes", label) in buckets for label in runs[kmod])]  # fmt: skip
    labels = list(dict.fromkeys(label for column in runs.values() for label in column))
    styles = line_styles(labels)
    ticks = {"size_bytes": lambda v, _: size_text(v).replace(" ", "\u2009"),
             "lifetime_us": lambda v, _: f"{v:g}\u2009µs" if v < 1000 else f"{v / 1000:g}\u2009ms"}  # fmt: skip
    with plt.rc_context(STYLE):
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
                same = twin_curves({label: tuple(sorted(c.items())) for label, c in counts.items() if c})
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
            where = f"{heading_of(kmod)}: " if kmod is not None else ""
            row.suptitle(f"{where}{_CALLER_WORDS[caller]}", x=0.01, ha="left", fontsize=8)
            row_axes[0].set_ylabel("allocations")
        for ax in axes[-1]:
            ax.set_xlabel("allocation size (guard page included)" if ax is axes[-1][0] else
                          "lifetime, allocation to free")  # fmt: skip
        figure_legend(fig, styles, {"": {label: [] for label in labels}})
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
    plt = load_pyplot()
    fig = histogram_figure(results, title=title)
    save_figure(fig, plt, target, path)
