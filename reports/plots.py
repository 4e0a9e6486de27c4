"""matplotlib figures as base64 PNG data URIs, so the page needs no other file.

Figures are built with the object-oriented API (``matplotlib.figure.Figure``),
never pyplot: no global state, no GUI backend, nothing left open.
"""

from __future__ import annotations

import base64
import io
import textwrap
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .data import finite

__all__ = ["PNG_PREFIX", "bars", "color", "figure", "hbars", "legend", "lines", "log_axis", "si_axis", "to_uri"]

PNG_PREFIX = "data:image/png;base64,"
_FIXED = {
    "thread": "#1f77b4",
    "process": "#ff7f0e",
    "asyncio": "#2ca02c",
    "dask": "#9467bd",
    "ThreadPoolExecutor": "#17becf",
    "ProcessPoolExecutor": "#d62728",
    "multiprocessing.Pool": "#8c564b",
    "gather+Semaphore": "#bcbd22",
    "TaskGroup": "#e377c2",
    "mpire": "#7f7f7f",
}
_OTHERS = ("#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd")


def color(name: str) -> str:
    """The same colour for an implementation on every plot and in every report (also
    for "thread with 4 workers": the first word decides)."""
    return _FIXED.get(name) or _FIXED.get(name.split(" ")[0]) or _OTHERS[zlib.crc32(name.encode()) % len(_OTHERS)]


def figure(
    ncols: int = 1,
    *,
    width: float = 7.2,
    height: float = 3.0,
    left: float = 0.8,
    right: float = 0.2,
    bottom: float = 0.55,
    top: float = 0.35,
    wspace: float = 0.9,
):
    """A figure of ``ncols`` axes in a row. Margins are fixed, in inches: a layout
    engine would draw every figure twice, and drawing is most of a report's time."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    panel = (width - left - right - wspace * (ncols - 1)) / ncols
    fig.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        bottom=bottom / height,
        top=1 - top / height,
        wspace=wspace / max(panel, 0.1),
    )
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=8)
    return fig, list(axes)


def to_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return PNG_PREFIX + base64.b64encode(buf.getvalue()).decode("ascii")


def log_axis(ax, axis: str = "y") -> None:
    """A log scale labelled with plain numbers (2, 5, 10, 20k), not 2×10⁰."""
    from matplotlib import ticker

    class Plain(ticker.LogFormatter):
        def __call__(self, x, pos=None):
            return si(x) if super().__call__(x, pos) else ""

    getattr(ax, f"set_{axis}scale")("log")
    which = ax.yaxis if axis == "y" else ax.xaxis
    which.set_major_formatter(Plain())
    which.set_minor_formatter(Plain(minor_thresholds=(1, 0.4)))


def si(value: float, _pos: object = None) -> str:
    """Axis numbers people read: 950, 20k, 1.2M."""
    a = abs(value)
    if a >= 1e6:
        return f"{value / 1e6:g}M"
    if a >= 1e3:
        return f"{value / 1e3:g}k"
    return f"{value:g}"


def si_axis(ax, axis: str = "y") -> None:
    from matplotlib import ticker

    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(ticker.FuncFormatter(si))


def legend(ax, **kw: Any) -> None:
    """A legend only when something is labelled (matplotlib warns otherwise)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, **kw)


def _err(median: float, low: float | None, high: float | None) -> tuple[float, float]:
    if not (finite(low) and finite(high)):
        return 0.0, 0.0
    return max(0.0, median - low), max(0.0, high - median)


def bars(
    ax,
    groups: Sequence[str],
    series: Mapping[str, Sequence[tuple[float | None, float | None, float | None]]],
    *,
    ylabel: str,
    log: bool = False,
    title: str = "",
    wrap: int = 16,
    rotation: float = 0,
) -> None:
    """Grouped bars: one group per label, one bar per series, with (median, low,
    high) error bars where an interval is given."""
    n = max(1, len(series))
    width = 0.8 / n
    for i, (name, values) in enumerate(series.items()):
        xs, ys, lo, hi = [], [], [], []
        for j, (median, low, high) in enumerate(values):
            if not finite(median) or (log and median <= 0):
                continue
            e = _err(median, low, high)
            xs.append(j - 0.4 + width * (i + 0.5))
            ys.append(median)
            lo.append(min(e[0], median * 0.999) if log else e[0])
            hi.append(e[1])
        if xs:
            err = [lo, hi] if any(lo) or any(hi) else None
            ax.bar(xs, ys, width, color=color(name), label=name, yerr=err, capsize=2, ecolor="#333")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(
        [textwrap.fill(g, wrap) if wrap else g for g in groups],
        fontsize=8,
        rotation=rotation,
        ha="right" if rotation else "center",
    )
    ax.set_ylabel(ylabel, fontsize=8)
    _finish(ax, log=log, title=title)


def _finish(ax, *, log: bool, title: str) -> None:
    """The y scale (log or SI-suffixed), the title and the legend of a plot."""
    if log:
        log_axis(ax)
    else:
        si_axis(ax)
    if title:
        ax.set_title(title, fontsize=9)
    legend(ax)


def hbars(ax, rows: Sequence[tuple[str, Any]], *, xlabel: str, title: str = "", log: bool = False) -> None:
    """One horizontal bar per (name, Estimate-or-number), top to bottom, with the
    95% CI as error bars where there is one; the names label the bars."""
    names, meds, lo, hi = [], [], [], []
    for name, est in rows:
        m = getattr(est, "median", est)
        if not finite(m) or (log and m <= 0):
            continue
        names.append(name)
        meds.append(m)
        low, high = getattr(est, "low", None), getattr(est, "high", None)
        e = _err(m, low, high)
        lo.append(min(e[0], 0.999 * m) if log else e[0])
        hi.append(e[1])
    err = [lo, hi] if any(lo) or any(hi) else None
    ax.barh(range(len(names)), meds, color=[color(n) for n in names], xerr=err, capsize=2)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=7)
    ax.invert_yaxis()
    if log:
        log_axis(ax, "x")
    else:
        si_axis(ax, "x")
    ax.set_xlabel(xlabel, fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)


def lines(
    ax,
    series: Mapping[str, Iterable[tuple[float, float | None, float | None, float | None]]],
    *,
    xlabel: str,
    ylabel: str,
    logx: bool = False,
    logy: bool = False,
    title: str = "",
    style: str = "-o",
    colors: dict[str, str] | None = None,
) -> None:
    """One line per series through (x, median, low, high) points, with error bars."""
    all_x: list[float] = []
    for name, points in series.items():
        pts = [(x, m, lo, hi) for x, m, lo, hi in points if finite(x) and finite(m) and (not logy or m > 0)]
        if not pts:
            continue
        pts.sort()
        xs = [p[0] for p in pts]
        all_x += xs
        ys = [p[1] for p in pts]
        errs = [_err(m, lo, hi) for _, m, lo, hi in pts]
        yerr = [[e[0] for e in errs], [e[1] for e in errs]] if any(any(e) for e in errs) else None
        ax.errorbar(
            xs,
            ys,
            yerr=yerr,
            fmt=style,
            color=(colors or {}).get(name) or color(name),
            label=name,
            capsize=2,
            markersize=4,
        )
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    if logx and all_x and min(all_x) > 0:
        log_axis(ax, "x")
    elif logx:  # a 0 on the axis (queue_size=0): linear near it, logarithmic beyond
        from matplotlib import ticker

        ax.set_xscale("symlog", linthresh=1)
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    _finish(ax, log=logy, title=title)
