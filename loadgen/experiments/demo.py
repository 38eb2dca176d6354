"""python -m loadgen demo: every model one after another, live, for a classroom.

    python -m loadgen demo [--models a,b] [--work cpu=2ms io=5ms] [--seconds 2] [--clients 16]

For each workload, each model gets a fresh server and the same closed-loop load; while it runs,
a live table shows its replies per second and the cores the server uses, with a caption of what
to look at. At the end, a side-by-side table. Without a terminal (CI, a pipe) it prints plain
progress lines and the same final table.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from loadgen.generator import runner
from loadgen.generator.engine import Settings
from loadgen.harness.calibration import calibrate_works
from loadgen.harness.pythons import runnable
from loadgen.harness.server import cpu_window, start_model
from servers import MODELS, NAME_WIDTH, available_cores
from servers.work import parse

WORKERS = 8
BAR_WIDTH = 16


def caption(spec: str, model: str, clients: int) -> str:
    """What to look at while ``model`` serves ``spec``: one line for the room."""
    work = parse(spec)
    waits = {"io": work.io_seconds, "block": work.block_seconds}
    kind = "cpu" if work.cpu_iterations != 0 else next((k for k, s in waits.items() if s), "")
    text = MODELS[model].captions.get(kind, "") if model in MODELS else ""
    wait = work.spec.partition("=")[2]  # only read for a wait alone: "5ms"
    seconds = waits.get(kind, 0.0)
    return text.format(workers=WORKERS, clients=clients, wait=wait,
                       most=1 / seconds if seconds else 0)  # fmt: skip


def bar(value: float, top: float) -> str:
    filled = int(round(BAR_WIDTH * min(value / top, 1.0))) if top > 0 else 0
    return "█" * filled + "·" * (BAR_WIDTH - filled)


class Scoreboard:
    """What the room sees: a row per model, the one running now updated live."""

    def __init__(self, models: list[str], spec: str, cores: int, clients: int):
        self.models, self.spec, self.cores, self.clients = models, spec, cores, clients
        self.rows: dict[str, dict[str, float]] = {}
        self.current = ""

    def table(self) -> Table:
        now = caption(self.spec, self.current, self.clients) if self.current else ""
        table = Table(title=f"{self.spec}: the same load on each model in turn", expand=False,
                      caption=f"▶ {self.current}: {now}" if now else None)  # fmt: skip
        table.add_column("model", style="bold", no_wrap=True)
        table.add_column("replies/s", justify="right", no_wrap=True)
        table.add_column("", no_wrap=True)
        table.add_column("cores", justify="right", no_wrap=True)
        table.add_column("", no_wrap=True)
        top = max((row["rate"] for row in self.rows.values()), default=1.0) or 1.0
        for model in self.models:
            row = self.rows.get(model)
            mark = "▶ " if model == self.current else ""
            if row is None:
                table.add_row(mark + model, "", "", "", "")
                continue
            table.add_row(
                mark + model, f"{row['rate']:,.0f}", bar(row["rate"], top),
                f"{row['cores']:.2f}", bar(row["cores"], self.cores),
            )  # fmt: skip
        return table


def run_one(
    model: str, exact_spec: str, seconds: float, clients: int, board: Scoreboard, live: Any,
    python: str | None = None,
) -> dict[str, float]:  # fmt: skip
    """Serve `exact_spec` (the calibrated form of board.spec) with `model` and measure it."""
    spec = board.spec
    with start_model(model, exact_spec, WORKERS, python=python) as server:
        server.wait_ready()
        settings = Settings(*server.address, concurrency=clients,
                            duration=seconds, warmup=0.3, timeout=1.0)  # fmt: skip
        last: dict[str, Any] = {}
        window: dict[str, Any] = {}  # the first and the latest sample while measuring
        board.current = model

        def update(elapsed: float, counts: dict[str, int], started: bool) -> None:
            if not counts["measuring"]:
                return
            now, sample = time.monotonic(), server.sample()
            window.setdefault("first", sample)
            window["last"] = sample
            if not last:  # the measured window just opened: start counting from here
                last.update(time=now, cpu=sample, received=counts["received"])
                return
            span = now - last["time"]
            if span < 0.2:
                return
            busy = max(0.0, cpu_window(last["cpu"], sample)["cores_used"] or 0.0)
            rate = (counts["received"] - last["received"]) / span
            last.update(time=now, cpu=sample, received=counts["received"])
            board.rows[model] = {"rate": rate, "cores": busy}
            if live is not None:
                live.update(board.table())
            else:
                print(f"  {spec:8} {model:{NAME_WIDTH}} {elapsed:4.1f} s: {rate:8,.0f} replies/s, "
                      f"{busy:.2f} cores", flush=True)  # fmt: skip

        result = runner.run(settings, update)
        cores = 0.0
        if "first" in window:
            cores = max(0.0, cpu_window(window["first"], window["last"])["cores_used"] or 0.0)
        final = {"rate": result["throughput_rps"], "cores": cores}
        board.rows[model] = final
        if live is not None:
            live.update(board.table())
        else:
            print(f"  {spec:8} {model:{NAME_WIDTH}} done: {final['rate']:8,.0f} replies/s, "
                  f"{cores:.2f} cores", flush=True)  # fmt: skip
        server.stop_or_none()
        return final


def main(
    models: list[str] | None = None, works: list[str] | None = None, seconds: float = 2.0,
    clients: int = 16, python: str | None = None,
) -> int:  # fmt: skip
    _, models, _ = runnable(python, models, say=sys.stderr)
    works = works or ["cpu=2ms", "io=5ms"]
    console = Console()
    terminal = sys.stdout.isatty()
    cores = available_cores()
    exact = calibrate_works(works).exact
    results: dict[str, dict[str, dict[str, float]]] = {}
    for spec in works:
        board = Scoreboard(models, spec, cores, clients)
        results[spec] = {}
        if terminal:
            with Live(board.table(), console=console, refresh_per_second=4) as live:
                for model in models:
                    results[spec][model] = run_one(model, exact[spec], seconds, clients,
                                                   board, live, python)  # fmt: skip
                board.current = ""
                live.update(board.table())
        else:
            print(f"{spec}: {clients} clients, {seconds:g} s per model", flush=True)
            for model in models:
                print(f"  {model}: {caption(spec, model, clients) or 'the same load'}", flush=True)
                results[spec][model] = run_one(model, exact[spec], seconds, clients, board, None,
                                               python)  # fmt: skip
    final = Table(title="Side by side: replies/s (server cores)")
    final.add_column("model", style="bold")
    for spec in works:
        final.add_column(spec, justify="right")
    for model in models:
        cells = [f"{results[s][model]['rate']:,.0f} ({results[s][model]['cores']:.2f})"
                 for s in works]  # fmt: skip
        final.add_row(model, *cells)
    console.print(final)
    return 0
