"""The answers printed at the end of ``poolbench run``, the same sentences that open
the report: the recommendation for each of the user's workloads, and the targets of
the run's scenarios, met or not."""

from __future__ import annotations

from typing import Any

from .data import load_run
from .recommend import recommend_all
from .targets import check_all

__all__ = ["print_answers"]


def print_answers(db: str, run_id: int, console: Any) -> None:
    from rich.markup import escape

    data = load_run(db, run_id, loadtests_dir="", benchmarks_path="")
    for rec in recommend_all(data):
        console.print(f"\n[bold]Recommendation for {escape(rec.scenario)}[/]")
        console.print(escape(rec.missing or rec.answer))
    checks = check_all(data)
    if checks:
        console.print("\n[bold]Targets[/] (ratios oriented so that higher is better for ours)")
        for c in checks:
            style = "green" if c.met else "red"
            console.print(f"[{style}]{escape(c.text)}[/]")
