"""What a results file says, before anyone draws it: runs grouped and summarised.

The figures, the report and ``compare`` all read results through ``Summary`` and these helpers,
so a median, a model's order or a workload's label means the same thing in all of them.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from loadgen.analysis.expectations import EXPECTED, disturbances, efficiency, few_samples
from loadgen.analysis.results import MachineProbe, Results, Run, RunKind
from servers import MODELS, Model
from servers.work import Work


def ordered(models: Iterable[str]) -> list[str]:
    """In the registry's order (baseline first), then any unknown ones by name."""
    known = [m for m in MODELS if m in set(models)]
    return known + sorted(set(models) - set(known))


def spread(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def knee(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """The last (rate, p99) before p99 grows past ``knee_factor`` (3x) its value at the
    lightest load."""
    if len(points) < 2:
        return None
    base = points[0][1]
    inside = [p for p in points if p[1] <= EXPECTED.knee_factor * base]
    return inside[-1] if inside and inside[-1] != points[-1] else None


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def expects_parallel(model: str, gil_enabled: bool) -> bool | None:
    """What the registry says ``model`` does with CPU work, with the GIL on or off as its
    servers ran; None for a model this version does not know (no expectation, no verdict)."""
    known: Model | None = MODELS.get(model)
    return known.computes_in_parallel(gil_enabled) if known else None


def expects_overlap(model: str, kind: str) -> bool | None:
    known: Model | None = MODELS.get(model)
    return kind in known.overlaps if known else None


def baseline_of(models: list[str]) -> str | None:
    return next((m for m in models if m in MODELS and MODELS[m].baseline), None)


class _Median:
    """A figure of a Point: the median over its trials (a read-only attribute)."""

    def __init__(self, figure: Callable[[Run], float | None]) -> None:
        self.figure = figure

    def __get__(self, point: Point, owner: type | None = None) -> float:
        return point.median(self.figure)


@dataclass(frozen=True)
class Point:
    """The trials of one (kind, model, work, level), each figure as the median over them."""

    kind: RunKind
    model: str
    work: Work
    level: Any
    runs: tuple[Run, ...]
    iterations_per_second: float | None = None  # the calibration's: for work efficiency

    def median(self, figure: Callable[[Run], float | None]) -> float:
        """The median of ``figure`` over the trials that have it (0 if none has)."""
        return median([v for v in map(figure, self.runs) if v is not None])

    # Each figure of a point: the median over its trials of what ``figure`` reads from a run.
    rate = _Median(lambda run: run.loadgen.throughput_rps)
    p50_us = _Median(lambda run: run.loadgen.latency_us.p50)
    p99_us = _Median(lambda run: run.loadgen.latency_us.p99)
    server_cores = _Median(lambda run: run.server.cores_used)
    processes = _Median(lambda run: run.server.processes)
    peak_rss_bytes = _Median(lambda run: run.server.peak_rss_bytes)
    generator_cores = _Median(lambda run: run.loadgen.generator.cpu_cores)

    @property
    def lost(self) -> int:
        return sum(run.loadgen.lost for run in self.runs)

    @property
    def limited(self) -> bool:
        """The generator was the limit in at least one trial."""
        return any(run.generator_limited for run in self.runs)

    @property
    def fewest_samples(self) -> int | None:
        """The fewest samples a trial's p99 was drawn from, if that is too few to trust."""
        few = [run.loadgen.latency_us.count for run in self.runs
               if few_samples(run.loadgen.latency_us)]  # fmt: skip
        return min(few) if few else None  # type: ignore[type-var]

    @property
    def disturbed(self) -> list[Run]:
        """The trials that counted although disturbed (after every retry, or not retried)."""
        return [run for run in self.runs if disturbances(run, self.iterations_per_second)]

    @property
    def efficiency(self) -> float | None:
        """The median work efficiency over the trials (None: no CPU work)."""
        found = [e for run in self.runs
                 if (e := efficiency(run, self.iterations_per_second)) is not None]  # fmt: skip
        return median(found) if found else None


class Summary:
    """Medians over trials per (kind, model, work, level) and the questions the report asks."""

    def __init__(self, results: Results):
        self.results = results
        self.metadata = results.metadata
        self.iterations_per_second = results.metadata.iterations_per_second
        self.groups: dict[tuple, list[Run]] = defaultdict(list)
        for run in results.counted:
            self.groups[(run.kind, run.model, run.work, run.level)].append(run)

    def gil_enabled(self, model: str) -> bool:
        """Whether ``model``'s servers ran with the GIL (``Results.gil_enabled``)."""
        return self.results.gil_enabled(model)

    def works(self, kind: RunKind = RunKind.MATRIX) -> list[Work]:
        return list(dict.fromkeys(k[2] for k in self.groups if k[0] == kind))

    def models(self, kind: RunKind = RunKind.MATRIX, work: Work | None = None) -> list[str]:
        return ordered({k[1] for k in self.groups if k[0] == kind and work in (None, k[2])})

    def levels(self, kind: RunKind, model: str, work: Work) -> list:
        return sorted(k[3] for k in self.groups if k[:3] == (kind, model, work))

    def point(self, kind: RunKind, model: str, work: Work, level: Any) -> Point:
        runs = tuple(sorted(self.groups[(kind, model, work, level)], key=lambda run: run.trial))
        return Point(kind, model, work, level, runs, self.iterations_per_second)

    def points(self) -> list[Point]:
        return [self.point(*key) for key in self.groups]

    def rate(self, kind: RunKind, model: str, work: Work, level: Any) -> float:
        return self.point(kind, model, work, level).rate

    def compared(self, model: str, work: Work) -> Point:
        """The matrix point compared: at the highest concurrency level, where every model is
        loaded. Taking each model's best level instead would pick the luckiest of several noisy
        numbers, and compare models at different loads."""
        return self.point(
            RunKind.MATRIX, model, work, max(self.levels(RunKind.MATRIX, model, work))
        )

    def round_ratios(self, model: str, base_model: str, work: Work) -> list[float]:
        """At the level compared, ``model``'s replies/s over the baseline's in each round
        (trial) both were measured in: the speed-up, once per round, so a drift that hit one
        round hits both sides of its ratio."""
        point, base = self.compared(model, work), self.compared(base_model, work)
        base_rates = {run.trial: run.loadgen.throughput_rps for run in base.runs}
        return [run.loadgen.throughput_rps / base_rates[run.trial] for run in point.runs
                if base_rates.get(run.trial)]  # fmt: skip

    def speedups(self, model: str, base_model: str, work: Work) -> list[float]:
        """``round_ratios``; where no round measured both, the one ratio of the two points."""
        return self.round_ratios(model, base_model, work) or [
            self.compared(model, work).rate / max(self.compared(base_model, work).rate, 1e-9)
        ]

    def probes(
        self, work: Work | None = None, kind: RunKind = RunKind.MATRIX
    ) -> list[MachineProbe]:
        """The machine's readings taken around ``work``'s runs of ``kind`` (all: None)."""
        return [probe for probe in self.results.probes
                if work is None or (probe.kind, probe.work) == (kind, work)]  # fmt: skip

    def capacity(self, work: Work | None = None, kind: RunKind = RunKind.MATRIX) -> float | None:
        """The median capacity the machine delivered around ``work`` (else over the whole
        run; None: never read)."""
        readings = self.probes(work, kind) or self.probes()
        return median([probe.capacity for probe in readings]) if readings else None

    def best(self, model: str, work: Work) -> tuple[Any, float]:
        """The level compared and the median replies/s there (see ``compared``)."""
        point = self.compared(model, work)
        return point.level, point.rate
