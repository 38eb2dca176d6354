"""The mixed-traffic experiment's results (``mixed.json``), typed, and what each model should do.

A ``MixedResults`` holds one ``MixedRun`` per server run: a model, a round, a phase (the fast
class ``alone``, or ``mixed`` with the slow class beside it), the GIL's switch interval the
server ran with, and each class's own latencies. ``fast``/``slow`` pick the median over the
rounds with its range, so a reader sees the spread. ``expected`` says, from the registry alone,
what a model does to a fast request that arrives while a slow one runs.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from loadgen.analysis.results import read_record
from loadgen.generator import stats
from loadgen.generator.mix import Mix
from loadgen.generator.records import Record
from loadgen.generator.result import ClassResult, ClientResult, Latency
from servers import MODELS

# The fast class on its own, beside the slow one, or beside a slow CLIENT (the mix dealt by
# client, the server traced: which worker each client's port landed on).
Phase = Literal["alone", "mixed", "by_client"]
Percentile = Literal["p50", "p99"]


@dataclass(frozen=True, kw_only=True)
class MixedRun(Record):
    model: str
    round: int
    phase: Phase
    switch_interval_ms: float  # what the server ran with (Python's default: 5)
    sent: int
    received: int
    lost: int
    classes: tuple[ClassResult, ...]  # alone: the fast class only
    per_worker: dict[str, int]  # the server's own count of what each worker answered
    clients: tuple[ClientResult, ...] = ()  # by_client: each client's class and figures
    # by_client, from the server's trace: the workers that answered each client port
    workers_of_port: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def workers_of(self, client: ClientResult) -> tuple[str, ...]:
        return self.workers_of_port.get(str(client.port), ())

    def kept_to_one(self) -> bool:
        """Whether every client was answered by one worker only (the kernel's hash)."""
        return all(len(self.workers_of(client)) <= 1 for client in self.clients)

    def fast_latency(self, clients: list[ClientResult]) -> Latency:
        return Latency.from_dict(stats.percentiles(stats.merge([c.histogram for c in clients])))

    def fast_beside_slow(self) -> tuple[list[ClientResult], list[ClientResult]]:
        """By client, where each client kept to one worker: the fast clients on a worker a
        slow client's requests landed on too, and the others."""
        slow = {w for client in self.clients if client.kind for w in self.workers_of(client)}
        fast = [client for client in self.clients if client.kind == 0]
        shared = [client for client in fast if set(self.workers_of(client)) & slow]
        return shared, [client for client in fast if client not in shared]


@dataclass(frozen=True, kw_only=True)
class MixedResults(Record):
    mix: Mix  # as asked; the first class is the fast one
    rate: float  # requests a second, open loop, over ``clients`` client sockets
    clients: int
    workers: int  # --workers of every model whose workers are workers (not a cap)
    seconds: float
    rounds: int
    server_python: str
    default_switch_interval_ms: float
    calibration: dict[str, int]  # each CPU class's iterations, by the class as asked
    skipped: dict[str, str]
    runs: tuple[MixedRun, ...] = ()

    @property
    def fast_name(self) -> str:
        return self.mix.classes[0].name

    @property
    def slow_names(self) -> list[str]:
        return [kind.name for kind in self.mix.classes[1:]]

    def models(self) -> list[str]:
        return list(dict.fromkeys(run.model for run in self.runs))

    def intervals(self, model: str) -> list[float]:
        """The switch intervals ``model`` ran the mix with, the default among them."""
        return sorted({run.switch_interval_ms for run in self.runs
                       if run.model == model and run.phase == "mixed"})  # fmt: skip

    def latency(
        self, model: str, phase: Phase, name: str, key: Percentile, interval: float | None = None
    ) -> Spread | None:
        """Class ``name``'s ``key`` latency (us) over the rounds: median, low, high."""
        interval = self.default_switch_interval_ms if interval is None else interval
        values = [getattr(kind.latency_us, key) for run in self.runs
                  if (run.model, run.phase, run.switch_interval_ms) == (model, phase, interval)
                  for kind in run.classes if kind.name == name]  # fmt: skip
        values = [value for value in values if value is not None]
        return Spread.of(values) if values else None


@dataclass(frozen=True)
class Spread:
    """A figure over several rounds: the median and its range."""

    median: float
    low: float
    high: float
    count: int

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values), len(values))

    def ms(self) -> str:
        if self.count == 1 or self.low == self.high:
            return f"{self.median / 1000:.3g} ms"
        return f"{self.median / 1000:.3g} ms ({self.low / 1000:.3g}-{self.high / 1000:.3g})"


Expected = Literal["whole", "switch", "idle", "hash"]


def expected(model: str) -> Expected:
    """What ``model`` does to a fast request that comes while a slow one computes, from its
    traits: ``whole`` (one thread: it waits for the whole slow request), ``switch`` (threads on
    one GIL: it waits for the GIL, about a switch interval per turn), ``idle`` (several GILs: an
    idle worker takes it), ``hash`` (the kernel picks the worker by the client's address: it
    waits for all of a slow request when its worker is the busy one)."""
    traits = MODELS[model]
    if traits.reuse_port:
        return "hash"
    if traits.parallel == "always":
        return "idle"
    return "switch" if traits.parallel == "without_gil" else "whole"


def load(path: Path) -> MixedResults:
    """Read a mixed.json; ValueError naming the file and what is wrong with it."""
    return read_record(path, MixedResults, "mixed.json")
