"""What ``--trace`` costs a server: the same load with and without it, alternated.

    python -m loadgen trace-cost

For each (model, work): four rounds of a closed loop of 32 clients for 2 s against a fresh
server, untraced and traced in alternating order; prints median replies/s and the server's CPU
per request (its whole process tree, warm-up included). A benchmark: it prints, never asserts.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from loadgen.generator import runner
from loadgen.generator.engine import Settings
from loadgen.harness.calibration import calibrate_works
from loadgen.harness.server import cpu_window, start_model
from servers import MODELS, baseline
from servers.work import ECHO, Work, parse

ROUNDS = 4


def measure(model: str, work: Work, folder: Path | None) -> tuple[float, float]:
    """One run: (replies/s, server CPU microseconds per request sent)."""
    extra = ("--trace", str(folder / f"{model}.json")) if folder else ()
    with start_model(model, work, 8, extra=extra) as server:
        server.wait_ready()
        settings = Settings(*server.address, concurrency=32, duration=2.0, warmup=0.3)
        before = server.sample()
        result = runner.run(settings)
        cpu = cpu_window(before, server.sample())
        server.stop()
    seconds = cpu["cpu_user_s"] + cpu["cpu_system_s"]
    return result["throughput_rps"], seconds / max(1, result["sent"]) * 1e6


def cases() -> list[tuple[str, Work]]:
    """The baseline with echo and with CPU work, and with echo the model whose workers share
    one GIL (and so one trace's lock and list)."""
    base = baseline().name
    shared = next(model.name for model in MODELS.values() if model.parallel == "without_gil")
    return [(base, ECHO), (shared, ECHO), (base, parse("cpu=2ms"))]


def main() -> int:
    calibration = calibrate_works([asked for _, asked in cases()])
    with tempfile.TemporaryDirectory() as temporary:
        for model, asked in cases():
            work = calibration.of(asked)
            runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
            for round_number in range(ROUNDS):
                # which goes first alternates, so a drift in the machine's speed favours neither
                for traced in (False, True) if round_number % 2 == 0 else (True, False):
                    runs[traced].append(measure(model, work, Path(temporary) if traced else None))
            for traced in (False, True):
                rate = statistics.median(r for r, _ in runs[traced])
                cpu = statistics.median(c for _, c in runs[traced])
                print(f"{model:9} {asked.spec:8} {'traced' if traced else 'untraced':9} "
                      f"{rate:10,.0f} replies/s  {cpu:8.1f} us server CPU per request",
                      flush=True)  # fmt: skip
    return 0
