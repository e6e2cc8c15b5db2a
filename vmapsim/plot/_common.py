"""What every figure shares: the file checks and writing, matplotlib's setup, one style per load path,
equal curves named as twins, one legend, sizes in words, and the window's scale rule."""

from __future__ import annotations

import importlib.util
import math
import os
import textwrap
from collections.abc import Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from vmapsim.errors import InvalidArgument
from vmapsim.units import GiB, MiB

__all__ = ["STYLE", "WINDOW_LINE", "figure_legend", "heading_of", "line_styles",
           "load_pyplot", "plot_path", "save_figure", "scaled_window", "size_text", "twin_curves"]


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


def load_pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend, or a clear error when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InvalidArgument("plotting needs matplotlib: pip install '.[plot]'") from None
    return plt


def save_figure(fig: Any, plt: Any, target: Path, path: str) -> None:
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
STYLE = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7.5, "xtick.labelsize": 7,
       "ytick.labelsize": 7, "figure.titlesize": 9, "axes.spines.top": False, "axes.spines.right": False,
       "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.5, "lines.linewidth": 0.9,
       "lines.markersize": 3.5}  # fmt: skip
# Okabe and Ito's colours (apart for colour-blind readers; yellow left out, faint on white), with line
# styles and markers cycling at other periods, so the three together stay apart in greyscale.
_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
_LINES: tuple[Any, ...] = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
WINDOW_LINE: dict[str, Any] = {"color": "black", "linestyle": (0, (6, 3)), "linewidth": 0.9}
#: Curves reaching this share of their window are drawn on a log scale with the window's size as a
#: line; lower, the size is named in the title and the scale is the curves' own.
_ON_SCALE = 1 / 50


def line_styles(labels: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Each label's colour, line style and marker, by its place in ``labels``."""
    return {label: {"color": _COLOURS[n % len(_COLOURS)], "linestyle": _LINES[n % len(_LINES)],
                    "marker": _MARKERS[n % len(_MARKERS)], "markerfacecolor": "white"}
            for n, label in enumerate(labels)}  # fmt: skip


def twin_curves(curves: Mapping[str, Hashable]) -> dict[str, list[str]]:
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


def figure_legend(fig: Any, styles: Mapping[str, Mapping[str, Any]], twins: Mapping[str, Mapping[str, list[str]]],
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


def size_text(n: float, digits: int = 4) -> str:
    """``n`` bytes in the largest binary unit under it, to ``digits`` significant digits."""
    for unit, scale in (("TiB", 1024 * GiB), ("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.{digits}g} {unit}"
    return f"{n:.{digits}g} B"


def scaled_window(axes: Sequence[Any], top: float, least: float, size: int, unit: int) -> bool:
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
        ax.axhline(size / unit, gid="window size", **WINDOW_LINE)
        ax.set_ylim(bottom, size / unit * 2)
    return True


def heading_of(kmod: int | None) -> str:
    return f"kmod {kmod}" if kmod is not None else ""
