"""python -m loadgen mixed: one slow request among fast ones, model by model (make bench-mixed).

    python -m loadgen mixed [--models a,b] [--mix echo:95,cpu=20ms:5] [--rate 200]
                            [--clients 16] [--workers 8] [--seconds 5] [--warmup 1] [--rounds 2]
                            [--switch-intervals 0.5,1,5,20] [--out results/latest] [--python P]

Each model gets a fresh server started with ``--work-from-request`` (``--workers``, default 8,
for every model with workers, as the bench) and an open loop of ``--rate`` requests a second
spread over ``--clients`` client sockets, arriving at random (Poisson: evenly spaced arrivals
dealt round-robin would send each client's requests at a fixed phase to the slow ones, so the
same clients would always land on a slow request, or never). First the fast class alone (the
first class of the mix, at its share of the rate), then the whole mix, each class asking its
own work (``generator.mix``). At 200 a second, 5% of them ``cpu=20ms`` fill about a fifth of
one core: the server is not overloaded, and what a fast request waits for is the slow one
beside it, not a queue growing without end. The models whose worker processes each read a
socket then get the mix dealt by client (one slow client among fast ones), their server
traced, so the trace says which worker each client landed on. Models whose threads share one
GIL run the mix again at each ``--switch-intervals`` (ms, ``sys.setswitchinterval``). Rounds
alternate the models' order, so a slow spell of the machine falls on different models.

Writes ``mixed.json`` (``analysis.mixed``) into ``--out``, each run as it ends; the command
then draws ``mixed.png`` and prints the findings (``views.mixed``; ``python -m loadgen
mixed-report`` redraws them).
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from loadgen.analysis.mixed import MixedResults, MixedRun, Phase
from loadgen.analysis.results import DEFAULT_OUT, TracedRequest, write_json_atomically
from loadgen.generator import runner
from loadgen.generator.engine import Settings
from loadgen.generator.mix import Mix, parse_mix
from loadgen.harness.calibration import calibrate_works
from loadgen.harness.pythons import runnable
from loadgen.harness.server import start_model
from servers import MODELS, NAME_WIDTH

DEFAULT_INTERVAL_MS = 5.0  # Python's own: what every server runs with unless asked


@dataclass(frozen=True)
class MixedSettings:
    models: list[str] | None = None  # None: every model the servers' Python can run
    mix: Mix = parse_mix("echo:95,cpu=20ms:5")
    rate: float = 200.0  # requests a second, all classes together
    clients: int = 16
    workers: int = 8  # for every model whose --workers counts workers, as the bench's
    seconds: float = 5.0  # measured, per run
    warmup: float = 1.0  # seconds of the same load before each run's, thrown away
    rounds: int = 2
    switch_intervals: tuple[float, ...] = (0.5, 1.0, 5.0, 20.0)  # ms, for threads on one GIL
    out: Path = DEFAULT_OUT  # the folder mixed.json goes into
    python: str | None = None  # the servers' interpreter (None: this one)


def one_run(model: str, phase: Phase, interval: float, mix: Mix, settings: MixedSettings,
            round_number: int) -> MixedRun:  # fmt: skip
    """A fresh server, one open loop: the fast class alone, the whole mix, or the mix dealt by
    client with the server traced (which worker each client's port landed on)."""
    alone, by_client = phase == "alone", phase == "by_client"
    with tempfile.TemporaryDirectory(prefix="udp-lab-mixed-") as folder:
        trace = Path(folder) / "trace.json"
        extra = ("--work-from-request", "--switch-interval", f"{interval:g}",
                 *(("--trace", str(trace)) if by_client else ()))  # fmt: skip
        with start_model(model, workers=settings.workers, extra=extra,
                         python=settings.python) as server:  # fmt: skip
            server.wait_ready()
            load = Settings(*server.address, mode="open", arrival="poisson",
                            concurrency=settings.clients,
                            rate=settings.rate * (mix.classes[0].share if alone else 1.0),
                            duration=settings.seconds, warmup=settings.warmup,
                            mix=None if alone else mix,
                            deal="client" if by_client else "request")  # fmt: skip
            result = runner.run(load)
            stopped = server.stop()
        ports = _workers_of_port(trace) if by_client else {}
    return MixedRun.from_dict({
        "model": model, "round": round_number, "phase": phase, "switch_interval_ms": interval,
        "sent": result["sent"], "received": result["received"], "lost": result["lost"],
        "classes": result["classes"] or [_as_fast_class(result, mix)],
        "per_worker": stopped["per_worker"], "clients": result["clients"],
        "workers_of_port": ports,
    })  # fmt: skip


def _workers_of_port(trace: Path) -> dict[str, list[str]]:
    """From a server's trace: the workers that answered each client port."""
    data = json.loads(trace.read_text(encoding="utf-8"))
    workers: dict[str, set[str]] = {}
    for record in data["requests"]:
        request = TracedRequest.from_dict(record, "trace.requests")
        if request.source_port is not None:
            workers.setdefault(str(request.source_port), set()).add(request.worker)
    return {port: sorted(names) for port, names in workers.items()}


def _as_fast_class(result: dict[str, Any], mix: Mix) -> dict[str, Any]:
    """A run of the fast class alone, told as that class of the mix."""
    fast = mix.classes[0]
    return {"name": fast.name, "work": fast.work.to_json(), "share": 1.0,
            "sent": result["sent"], "received": result["received"], "lost": result["lost"],
            "latency_us": result["latency_us"], "histogram": result["histogram"]}  # fmt: skip


def plan(models: list[str], settings: MixedSettings) -> list[tuple[int, str, Phase, float]]:
    """Every run, in order: per round, each model alone then mixed (the models in turn, the
        order reversed every other round), then the mix dealt by client for the models whose worker
    processes each read a socket, and the switch intervals of models on one GIL."""
    runs = []
    for round_number in range(1, settings.rounds + 1):
        order = models if round_number % 2 else models[::-1]
        for model in order:
            runs += [(round_number, model, "alone", DEFAULT_INTERVAL_MS),
                     (round_number, model, "mixed", DEFAULT_INTERVAL_MS)]  # fmt: skip
        for model in order:
            traits = MODELS[model]
            if traits.forks and not traits.hands_off:  # a socket reader in each worker process
                runs.append((round_number, model, "by_client", DEFAULT_INTERVAL_MS))
            if traits.parallel == "without_gil":
                runs += [(round_number, model, "mixed", interval)
                         for interval in settings.switch_intervals
                         if interval != DEFAULT_INTERVAL_MS]  # fmt: skip
    return runs


def main(settings: MixedSettings) -> int:
    about, models, skipped = runnable(settings.python, settings.models)
    calibration = calibrate_works([kind.work for kind in settings.mix.classes])
    mix = settings.mix.calibrated(calibration.of)
    results = MixedResults(
        mix=settings.mix, rate=settings.rate, clients=settings.clients, workers=settings.workers,
        seconds=settings.seconds, rounds=settings.rounds,
        server_python=str(about.get("version", "")),
        default_switch_interval_ms=DEFAULT_INTERVAL_MS,
        calibration={spec: int(done["iterations"]) for spec, done in calibration.measured.items()},
        skipped=skipped,
    )  # fmt: skip
    path = settings.out / "mixed.json"
    runs = plan(models, settings)
    for i, (round_number, model, phase, interval) in enumerate(runs, 1):
        started = time.monotonic()
        run = one_run(model, phase, interval, mix, settings, round_number)
        results = replace(results, runs=(*results.runs, run))
        write_json_atomically(path, results.to_dict())  # each run kept as it ends
        print(f"[{i}/{len(runs)}] round {round_number} {model:{NAME_WIDTH}} {phase:5} "
              f"switch {interval:g} ms: {_line(run)} ({time.monotonic() - started:.0f} s)",
              flush=True)  # fmt: skip
    print(f"wrote {path}")
    return 0


def _line(run: MixedRun) -> str:
    return "  ".join(
        f"{kind.name} p50 {(kind.latency_us.p50 or 0) / 1000:.2f} p99 "
        f"{(kind.latency_us.p99 or 0) / 1000:.2f} ms"
        for kind in run.classes
    ) + (f"  LOST {run.lost}" if run.lost else "")
