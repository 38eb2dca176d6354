"""python -m loadgen demo: every model in turns, live, for a classroom.

    python -m loadgen demo [--models a,b] [--work cpu=2ms io=5ms] [--seconds 2] [--clients 16]
                           [--rounds 3]

For each workload, every model's server is started at once; then the same closed-loop load
visits them in turns, in ``--rounds`` short rounds (``--seconds`` per model in all), so that a
drift of the machine's speed hits every model alike. Before each round a capacity probe reads
what the machine could deliver then (two processes of the same pure-Python work against one).
While a model runs, a live table shows its replies per second (the median of its rounds so
far) and the cores the server uses, with a caption of what to look at. At the end, a
side-by-side table with each figure's spread over the rounds, and a verdict per model for CPU
work against what the machine delivered: nothing silently wrong. Without a terminal (CI, a
pipe) it prints plain progress lines and the same final table.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from loadgen.analysis.expectations import EXPECTED, parallel_floor
from loadgen.generator import runner
from loadgen.generator.engine import Settings
from loadgen.harness.calibration import calibrate_works
from loadgen.harness.capacity import Probe
from loadgen.harness.pythons import runnable
from loadgen.harness.server import ServerProcess, cpu_window, start_model
from servers import MODELS, NAME_WIDTH, available_cores
from servers.work import Work, format_seconds, parse

WORKERS = 8
BAR_WIDTH = 16
FINAL_BAR_WIDTH = 6  # two workloads side by side fit 100 columns, a projector's width


@dataclass(frozen=True)
class DemoSettings:
    models: list[str] | None = None  # None: every model the servers' Python can run
    works: list[Work] = field(default_factory=lambda: [parse("cpu=2ms"), parse("io=5ms")])
    seconds: float = 2.0  # per model and workload, shared among the rounds
    clients: int = 16  # closed-loop clients
    rounds: int = 3  # the models take turns this many times
    python: str | None = None  # the servers' interpreter (None: this one)


def caption(work: Work, model: str, clients: int) -> str:
    """What to look at while ``model`` serves ``work``: one line for the room."""
    seconds = {"io": work.io_seconds, "block": work.block_seconds}.get(work.kind, 0.0)
    text = MODELS[model].captions.get(work.kind, "") if model in MODELS else ""
    return text.format(workers=WORKERS, clients=clients, wait=format_seconds(seconds),
                       most=1 / seconds if seconds else 0)  # fmt: skip


def bar(value: float, top: float, width: int = BAR_WIDTH) -> str:
    filled = int(round(width * min(value / top, 1.0))) if top > 0 else 0
    return "█" * filled + "·" * (width - filled)


class Scoreboard:
    """What the room sees: a row per model (the median of its rounds so far, and their spread),
    the one running now updated live, and what the machine delivered."""

    def __init__(self, models: list[str], work: Work, cores: int, clients: int):
        self.models, self.work, self.cores, self.clients = models, work, cores, clients
        self.gil: dict[str, bool] = {}  # per model, as its server said from inside
        self.rows: dict[str, dict[str, float]] = {}
        self.current = ""
        self.capacity: list[float] = []  # the machine's readings, one before each round

    def table(self) -> Table:
        now = caption(self.work, self.current, self.clients) if self.current else ""
        machine = (f"; the machine: {statistics.median(self.capacity):.2f} cores' worth of work"
                   if self.capacity else "")  # fmt: skip
        title = f"{self.work.spec}: the same load on each model in turn{machine}"
        table = Table(title=title, expand=False,
                      caption=f"▶ {self.current}: {now}" if now else None)  # fmt: skip
        table.add_column("model", style="bold", no_wrap=True)
        table.add_column("replies/s", justify="right", no_wrap=True)
        table.add_column("", no_wrap=True)
        table.add_column("rounds", justify="right", no_wrap=True)
        table.add_column("cores", justify="right", no_wrap=True)
        table.add_column("", no_wrap=True)
        top = max((row["rate"] for row in self.rows.values()), default=1.0) or 1.0
        for model in self.models:
            row = self.rows.get(model)
            mark = "▶ " if model == self.current else ""
            if row is None:
                table.add_row(mark + model, "", "", "", "", "")
                continue
            spread = f"{row['low']:,.0f}-{row['high']:,.0f}" if "low" in row else ""
            table.add_row(
                mark + model, f"{row['rate']:,.0f}", bar(row["rate"], top), spread,
                f"{row['cores']:.2f}", bar(row["cores"], self.cores),
            )  # fmt: skip
        return table


def run_one(server: ServerProcess, seconds: float, clients: int) -> dict[str, float]:
    """One round of ``server.model``'s share of the load: its replies/s and the server's cores
    over exactly the measured window (sampled at its edges)."""
    settings = Settings(*server.address, concurrency=clients, duration=seconds, warmup=0.1,
                        warmup_max=0.4, timeout=1.0)  # fmt: skip
    edges: dict[str, Any] = {}
    result = runner.run_here(settings, on_window=lambda edge: edges.update({edge: server.sample()}))
    cores = cpu_window(edges["start"], edges["end"])["cores_used"] if len(edges) == 2 else None
    return {"rate": result["throughput_rps"], "cores": max(0.0, cores or 0.0)}


def summarise(rounds: list[dict[str, float]]) -> dict[str, float]:
    """A model's rounds as the board shows them: the medians and the spread of replies/s."""
    rates = [r["rate"] for r in rounds]
    return {"rate": statistics.median(rates), "low": min(rates), "high": max(rates),
            "cores": statistics.median(r["cores"] for r in rounds)}  # fmt: skip


def verdicts(
    work: Work, rounds: dict[str, list[dict[str, float]]], capacity: float | None,
    base: str | None, gil: dict[str, bool] | None = None,
) -> list[str]:  # fmt: skip
    """For CPU work: each model's speed-up over the baseline (the median over rounds of the
    ratio within a round), against what the registry expects, with the GIL as each server said
    from inside (``gil``: per model, from its ready event; on where not said), and what the
    machine delivered."""
    if base is None or not work.cpu_iterations or base not in rounds:
        return []
    lines = []
    if capacity is not None:
        lines.append(f"{work.spec}: the machine delivered {capacity:.2f} cores' worth of the same "
                     f"work with every core busy (median of its readings).")  # fmt: skip
    for model, mine in rounds.items():
        if model == base or model not in MODELS:
            continue
        ratios = [m["rate"] / b["rate"] for m, b in zip(mine, rounds[base], strict=False)
                  if b["rate"]]  # fmt: skip
        if not ratios:
            continue
        ratio, spread = statistics.median(ratios), f"rounds {min(ratios):.2f}-{max(ratios):.2f}"
        if MODELS[model].computes_in_parallel((gil or {}).get(model, True)):
            share = ratio / capacity if capacity else None
            of = f", {share:.2f} of what the machine delivered" if share is not None else ""
            ok = ratio >= parallel_floor(capacity)
            word = "in parallel" if ok else "short of parallel: see the machine's figure above"
            lines.append(f"  {model:{NAME_WIDTH}} {ratio:.2f}x {base} ({spread}){of}: {word}")
        else:
            ok = ratio <= EXPECTED.turns_speedup
            word = "took turns on one core" if ok else "faster than taking turns allows"
            lines.append(f"  {model:{NAME_WIDTH}} {ratio:.2f}x {base} ({spread}): {word}")
    return lines


def serve_work(
    work: Work, board: Scoreboard, probe: Probe | None, live: Live | None,
    settings: DemoSettings,
) -> dict[str, list[dict[str, float]]]:  # fmt: skip
    """Every model's server up at once, then the settings' rounds of each in turn, the
    machine read before each (into ``board.capacity``); every model's rounds."""
    clients = board.clients
    seconds = settings.seconds / settings.rounds
    done: dict[str, list[dict[str, float]]] = {model: [] for model in board.models}
    servers = [start_model(model, work, WORKERS, python=settings.python)
               for model in board.models]  # fmt: skip
    try:
        for server in servers:
            server.wait_ready()
            board.gil[server.model] = server.ready.get("gil_enabled", True)
        for _ in range(settings.rounds):
            if probe is not None:
                board.capacity.append(probe.read().capacity)
            for server in servers:
                model = board.current = server.model
                if live is not None:
                    live.update(board.table())
                done[model].append(run_one(server, seconds, clients))
                row = board.rows[model] = summarise(done[model])
                if live is not None:
                    live.update(board.table())
                else:
                    print(f"  {work.spec:8} {model:{NAME_WIDTH}} round {len(done[model])}: "
                          f"{done[model][-1]['rate']:8,.0f} replies/s (median so far "
                          f"{row['rate']:,.0f}), {row['cores']:.2f} cores", flush=True)  # fmt: skip
        board.current = ""
    finally:
        for server in servers:
            server.request_stop()
        for server in servers:
            server.stop_or_none()
    return done


def side_by_side(models: list[str], specs: list[str],
                 results: dict[str, dict[str, dict[str, float]]]) -> Table:  # fmt: skip
    """The last picture: each model's replies/s per workload, a bar each against the fastest
    model there, so the room still sees every model's bar when the demo is over."""
    final = Table(title="Side by side: replies/s, median of the rounds (their spread; server "
                  "cores)")  # fmt: skip
    final.add_column("model", style="bold", no_wrap=True)
    for spec in specs:
        final.add_column("", no_wrap=True)
        final.add_column(spec, justify="right", no_wrap=True)
    tops = {spec: max((row["rate"] for row in results[spec].values()), default=0.0)
            for spec in specs}  # fmt: skip
    for model in models:
        cells = []
        for spec in specs:
            row = results[spec].get(model)
            if row is None:  # it ran no round of this workload
                cells += ["", ""]
                continue
            spread = f"({row['low']:,.0f}-{row['high']:,.0f}; {row['cores']:.2f})"
            cells += [bar(row["rate"], tops[spec], FINAL_BAR_WIDTH), f"{row['rate']:,.0f} {spread}"]
        final.add_row(model, *cells)
    return final


def main(settings: DemoSettings) -> int:
    _, models, _ = runnable(settings.python, settings.models, say=sys.stderr)
    works, clients, seconds, rounds = (settings.works, settings.clients, settings.seconds,
                                       settings.rounds)  # fmt: skip
    console = Console()
    terminal = sys.stdout.isatty()
    cores = available_cores()
    calibration = calibrate_works(works)
    results: dict[str, dict[str, dict[str, float]]] = {}
    judged: list[str] = []
    base = next((m for m in models if m in MODELS and MODELS[m].baseline), None)
    # One core: nothing to compare a core with.
    with Probe() if cores > 1 else contextlib.nullcontext() as probe:
        for work in map(calibration.of, works):
            board = Scoreboard(models, work, cores, clients)
            if terminal:
                with Live(board.table(), console=console, refresh_per_second=4) as live:
                    per_model = serve_work(work, board, probe, live, settings)
                    live.update(board.table())
            else:
                print(f"{work.spec}: {clients} clients, {seconds:g} s per model in {rounds} rounds",
                      flush=True)  # fmt: skip
                for model in models:
                    print(f"  {model}: {caption(work, model, clients) or 'the same load'}",
                          flush=True)  # fmt: skip
                per_model = serve_work(work, board, probe, None, settings)
            results[work.spec] = {model: summarise(r) for model, r in per_model.items() if r}
            capacity = statistics.median(board.capacity) if board.capacity else None
            judged += verdicts(work, per_model, capacity, base, board.gil)
    console.print(side_by_side(models, [work.spec for work in works], results))
    for line in judged:
        console.print(line, highlight=False)
    return 0
