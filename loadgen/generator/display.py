"""What a person sees while the generator runs and after: a live line, then a summary table.

On a terminal the live line is a rich progress bar; otherwise (CI, a pipe) a plain line on
stderr every second or so, so logs stay readable.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from loadgen.generator.engine import Settings


@contextlib.contextmanager
def progress(settings: Settings, enabled: bool = True) -> Iterator[Any]:
    """Yield the callback the runner calls a few times a second (None when disabled)."""
    if not enabled:
        yield None
        return
    total = settings.warmup + settings.duration
    if sys.stdout.isatty():
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[counts]}"),
        )
        with Progress(*columns, transient=True) as bar:
            task = bar.add_task("warm-up", total=total, counts="")

            def update(elapsed: float, counts: dict[str, int], started: bool) -> None:
                phase = "measuring" if counts["measuring"] else "warm-up"
                bar.update(task, completed=elapsed, description=phase, counts=_line(counts))

            yield update
        return
    last = [0.0]

    def plain(elapsed: float, counts: dict[str, int], started: bool) -> None:
        if started and time.monotonic() - last[0] >= 1.0:
            last[0] = time.monotonic()
            phase = "measuring" if counts["measuring"] else "warm-up"
            print(f"{elapsed:5.1f}/{total:g} s {phase}: {_line(counts)}", file=sys.stderr)

    yield plain


def _line(counts: dict[str, int]) -> str:
    return f"sent {counts['sent']:,}  received {counts['received']:,}  lost {counts['lost']:,}"


def print_result(result: dict[str, Any]) -> None:
    console = Console()
    table = Table(title=f"{result['mode']} loop against {result['target']}", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("measured", f"{result['duration_s']:.2f} s")
    table.add_row("throughput", f"{result['throughput_rps']:,.0f} replies/s")
    table.add_row(
        "sent = received + lost + in flight",
        f"{result['sent']:,} = {result['received']:,} + {result['lost']:,} + "
        f"{result['in_flight']:,}" + ("" if result["accounting_ok"] else "  (MISMATCH)"),
    )
    extras = {k: result[k] for k in ("late", "duplicate", "corrupt", "server_errors") if result[k]}
    table.add_row("anomalies", ", ".join(f"{k} {v:,}" for k, v in extras.items()) or "none")
    for key, title in (("latency_us", "latency"), ("latency_uncorrected_us", "uncorrected")):
        if result.get(key) and result[key]["count"]:
            figures = result[key]
            table.add_row(
                f"{title} (us)",
                "  ".join(f"{p} {figures[p]:,}" for p in ("p50", "p90", "p99", "p999", "max")),
            )
    for kind in result.get("classes", ()):  # a mix: each class on its own
        figures = kind["latency_us"]
        shown = "  ".join(f"{p} {figures[p]:,}" for p in ("p50", "p99", "max")) if figures[
            "count"] else "no replies"  # fmt: skip
        table.add_row(f"{kind['name']} ({kind['share']:.0%}, us)",
                      f"{kind['received']:,}/{kind['sent']:,}  {shown}")  # fmt: skip
    generator = result["generator"]
    state = []
    if generator["behind"]:
        state.append("BEHIND SCHEDULE")
    if generator["saturated"]:
        state.append("SATURATED: the generator may be the limit")
    table.add_row(
        "generator",
        f"{generator['cpu_cores']:.2f} cores, {generator['achieved_send_rps']:,.0f} sends/s"
        + (f"  {'; '.join(state)}" if state else ""),
    )
    for part in result.get("cluster", {}).get("parts", []):
        where = f"part {part['part']} on {part['worker']}"
        table.add_row(where, f"from {part['source']}  {_line(part)}" if part["source"] else
                      f"LOST  {_line(part)} (from its last report)")  # fmt: skip
    console.print(table)
