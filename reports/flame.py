"""Flame graphs of the profiles that ``poolbench run --profile`` recorded (py-spy's
collapsed stacks, :mod:`scenarios.profiling`): one inline SVG per implementation, so
the page stays one self-contained file, and the frames with the most samples of
their own beside it (what the pool itself costs, on no-op jobs)."""

from __future__ import annotations

import hashlib
import os
import sys
from collections import Counter
from typing import Any

from scenarios import store
from scenarios.profiling import parse_collapsed, top_frames

from .data import RunData
from .markup import Cell, esc, para, table

__all__ = ["flame_svg", "profiles_html", "short_frame"]

WIDTH = 900
ROW = 15  # px per stack level
MIN_SHARE = 0.004  # narrower frames are left out (with their children)
MAX_DEPTH = 60


def short_frame(frame: str) -> str:
    """``fn (/long/path/to/module.py:12)`` → ``fn (module.py:12)``."""
    name, _, where = frame.partition(" (")
    if not where:
        return frame
    return f"{name} ({os.path.basename(where.rstrip(')'))})"


def _colour(frame: str) -> str:
    # py-spy names files relative to sys.path: "pools/_core.py", "threading.py"
    where = frame.partition(" (")[2].rsplit(":", 1)[0]
    top = where.split("/")[-2] if "/" in where and os.path.isabs(where) else where.split("/")[0]
    top = top.removesuffix(".py")
    if frame.startswith("["):  # [this process], [child process]
        return "hsl(260,25%,80%)"
    if top == "pools" or "/pools/" in where:
        hue, sat = 25, 70  # the library: orange
    elif top in ("scenarios", "poolbench", "reports", "loadtests"):
        hue, sat = 200, 60  # the harness: blue
    elif where.startswith("<") or top in sys.stdlib_module_names:
        hue, sat = 0, 8  # the standard library: grey
    else:
        hue, sat = 120, 45  # your code, and third parties: green
    shade = int(hashlib.md5(frame.encode()).hexdigest()[:2], 16) % 20
    return f"hsl({hue},{sat}%,{62 + shade // 2}%)"


def _tree(stacks: Counter[tuple[str, ...]]) -> dict[str, Any]:
    root: dict[str, Any] = {"n": 0, "kids": {}}
    for stack, count in stacks.items():
        node = root
        node["n"] += count
        for frame in stack[:MAX_DEPTH]:
            node = node["kids"].setdefault(frame, {"n": 0, "kids": {}})
            node["n"] += count
    return root


def flame_svg(stacks: Counter[tuple[str, ...]], title: str) -> str:
    """An icicle-style flame graph (the outermost frame on top) as an inline SVG."""
    total = sum(stacks.values())
    if not total:
        return ""
    rects: list[str] = []
    depth_seen = 0

    def walk(node: dict[str, Any], x: float, depth: int) -> None:
        nonlocal depth_seen
        for frame, kid in sorted(node["kids"].items(), key=lambda kv: -kv[1]["n"]):
            share = kid["n"] / total
            if share < MIN_SHARE:
                continue
            w = share * WIDTH
            y = 20 + depth * ROW
            depth_seen = max(depth_seen, depth)
            label = short_frame(frame)
            tip = f"{label} — {kid['n']} samples ({share:.1%})"
            text = ""
            chars = int(w / 6.5)
            if chars >= 4:
                shown = label if len(label) <= chars else label[: chars - 1] + "…"
                text = f'<text x="{x + 2:.1f}" y="{y + 11}">{esc(shown)}</text>'
            rects.append(
                f'<g><title>{esc(tip)}</title><rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{ROW - 1}" '
                f'fill="{_colour(frame)}"/>{text}</g>'
            )
            walk(kid, x, depth + 1)
            x += w

    walk(_tree(stacks), 0.0, 0)
    height = 20 + (depth_seen + 1) * ROW + 4
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="flame" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="monospace" font-size="10">'
        f'<text x="0" y="13" font-size="12">{esc(title)}</text>{"".join(rects)}</svg>'
    )


def profiles_html(data: RunData, scenario: str) -> str:
    """The scenario's profiles, one flame graph per implementation (and variant)."""
    try:
        df = store.load_profiles(data.db, data.run_id)
    except Exception:  # noqa: BLE001 - an unreadable table is said, not fatal to the report
        return ""
    df = df[df.scenario == scenario]
    if df.empty:
        return ""
    out = [
        para(
            "Where does the time go: py-spy profiles (a pass of its own after the timed repeats, worker processes "
            "included, samples of running code only) — the outermost frame on top, width = share of the samples. "
            "Orange: the pools library; blue: the harness; grey: the standard library; green: your code and "
            "third parties. Hover for a frame's samples."
        )
    ]
    for row in df.itertuples():
        name = f"{row.variant} · {row.implementation}" if row.variant else row.implementation
        if not isinstance(row.stacks, str) or not row.stacks:
            out.append(para(f"{name}: no profile ({row.error or 'nothing recorded'}).", "missing"))
            continue
        stacks = parse_collapsed(row.stacks)
        total = sum(stacks.values())
        out.append(f'<div class="flame">{flame_svg(stacks, f"{scenario} on {name}: {total} samples")}</div>')
        rows = [
            ("", [Cell(short_frame(t.frame)), Cell(f"{t.self_share:.1%}", t.self_share), Cell(f"{t.total_share:.1%}")])
            for t in top_frames(stacks, 8)
        ]
        out.append(
            table(
                [("frame", ""), ("self", "samples running this frame"), ("total", "samples with it on the stack")],
                rows,
                caption=f"{name}: the frames with the most samples of their own",
            )
        )
    return "".join(out)
