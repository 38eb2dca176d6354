"""How the kernel spreads clients over a SO_REUSEPORT group: each worker's share of the replies.

    python -m loadgen spread [--workers 2,4] [--clients 16,1] [--seconds 2] [--rounds 2]

For each model whose registry entry binds with ``reuse_port`` (or each given with --models: one
whose workers share a socket shows who was idle instead), each worker count and each number of
client sockets: a fresh server on port 0, a closed loop of that many clients (a socket each, so
a source port each) for --seconds, and each worker's share of the stopped event's per-worker
counts. The kernel hashes a client's addresses and ports to one socket: one client keeps one
worker busy and the others idle; many spread, unevenly when they are few. Every round is a fresh
server and fresh client ports, so many clients' shares move between rounds; one client's never
do (100% on one worker, whichever). The generator's probe, one request from a socket of its
own, may land elsewhere: a worker counts as busy from 1% of the replies. A measurement: it
prints, never asserts.
"""

from __future__ import annotations

from dataclasses import dataclass

from loadgen.generator import runner
from loadgen.generator.engine import Settings
from loadgen.harness.pythons import runnable
from loadgen.harness.server import start_model
from servers import MODELS

BUSY = 0.01  # a worker's share of the replies from which it counts as busy (not the probe's)


@dataclass(frozen=True)
class SpreadSettings:
    models: list[str] | None = None  # None: every model that binds with reuse_port
    workers: tuple[int, ...] = (2, 4)
    clients: tuple[int, ...] = (16, 1)  # client sockets: closed-loop clients, a socket each
    seconds: float = 2.0
    rounds: int = 2
    python: str | None = None


def shares(model: str, workers: int, clients: int, seconds: float,
           python: str | None = None) -> tuple[dict[str, float], int]:  # fmt: skip
    """One fresh server under one closed loop: each worker's share of what it handled (0 to
    1, by label) and how many it handled."""
    with start_model(model, workers=workers, python=python) as server:
        server.wait_ready()
        runner.run(Settings(*server.address, concurrency=clients, duration=seconds, warmup=0.2))
        per_worker = server.stop()["per_worker"]
    total = sum(per_worker.values())
    return {label: count / max(1, total) for label, count in per_worker.items()}, total


def main(settings: SpreadSettings) -> int:
    asked = settings.models or [name for name, model in MODELS.items() if model.reuse_port]
    _, models, _ = runnable(settings.python, asked)  # on the servers' Python: says who it skips
    for model in models:
        for workers in settings.workers:
            for clients in settings.clients:
                for round_number in range(1, settings.rounds + 1):
                    share, total = shares(model, workers, clients, settings.seconds,
                                          settings.python)  # fmt: skip
                    busy = sum(1 for value in share.values() if value >= BUSY)
                    print(f"{model:10} {workers} workers, {clients:3} client socket(s), round "
                          f"{round_number}: " + " ".join(f"{v:4.0%}" for v in share.values())
                          + f"  ({busy} of {workers} busy, {total:,} replies)",
                          flush=True)  # fmt: skip
    return 0
