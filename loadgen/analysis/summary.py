"""What a results file says, before anyone draws it: runs grouped and summarised.

The figures, the report and ``compare`` all read results through ``Summary`` and these helpers,
so a median, a model's order or a workload's label means the same thing in all of them.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from loadgen.analysis.results import gil_enabled
from servers import MODELS, Model


def work_label(run_work: str, metadata: dict[str, Any]) -> str:
    """``cpu=21554it`` back to the ``cpu=2ms`` it was calibrated from, for titles."""
    for spec, figures in metadata.get("calibration", {}).items():
        if run_work.startswith(f"cpu={figures['iterations']}it"):
            return run_work.replace(f"cpu={figures['iterations']}it", spec)
    return run_work


def runs_of(data: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [run for run in data["runs"] if run["kind"] == kind]


def ordered(models: Iterable[str]) -> list[str]:
    """In the registry's order (baseline first), then any unknown ones by name."""
    known = [m for m in MODELS if m in set(models)]
    return known + sorted(set(models) - set(known))


def spread(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def knee(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """The last (rate, p99) before p99 grows past 3x its value at the lightest load."""
    if len(points) < 2:
        return None
    base = points[0][1]
    inside = [p for p in points if p[1] <= 3 * base]
    return inside[-1] if inside and inside[-1] != points[-1] else None


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def expects_parallel(model: str, metadata: dict[str, Any]) -> bool | None:
    """What the registry says ``model`` does with CPU work on the servers' interpreter; None
    for a model this version does not know (no expectation, no verdict)."""
    known: Model | None = MODELS.get(model)
    return known.computes_in_parallel(gil_enabled(metadata)) if known else None


def expects_overlap(model: str, kind: str) -> bool | None:
    known: Model | None = MODELS.get(model)
    return kind in known.overlaps if known else None


def baseline_of(models: list[str]) -> str | None:
    return next((m for m in models if m in MODELS and MODELS[m].baseline), None)


class Summary:
    """Medians over trials per (kind, model, work, level) and the questions the report asks."""

    def __init__(self, data: dict[str, Any]):
        self.data = data
        self.metadata = data["metadata"]
        self.groups: dict[tuple, list[dict]] = defaultdict(list)
        for run in data["runs"]:
            level = {
                "matrix": run["loadgen"]["concurrency"],
                "load_sweep": run.get("offered_percent"),
                "core_sweep": run["cores_allowed"],
            }[run["kind"]]
            self.groups[(run["kind"], run["model"], run["work"], level)].append(run)

    def works(self, kind: str = "matrix") -> list[str]:
        return list(dict.fromkeys(k[2] for k in self.groups if k[0] == kind))

    def models(self, kind: str = "matrix", work: str | None = None) -> list[str]:
        return ordered({k[1] for k in self.groups if k[0] == kind and work in (None, k[2])})

    def levels(self, kind: str, model: str, work: str) -> list:
        return sorted(k[3] for k in self.groups if k[:3] == (kind, model, work))

    def rate(self, kind: str, model: str, work: str, level: Any) -> float:
        runs = self.groups[(kind, model, work, level)]
        return median([r["loadgen"]["throughput_rps"] for r in runs])

    def best(self, model: str, work: str) -> tuple[Any, float]:
        """The figures compared: at the highest concurrency level, where every model is loaded.

        Taking each model's best level instead would pick the luckiest of several noisy
        numbers, and compare models at different loads.
        """
        level = max(self.levels("matrix", model, work))
        return level, self.rate("matrix", model, work, level)

    def figure(self, model: str, work: str, level: Any, path: str) -> float:
        """The median of a nested figure, e.g. path 'server.cores_used'."""
        values = []
        for run in self.groups[("matrix", model, work, level)]:
            value: Any = run
            for key in path.split("."):
                value = value[key]
            if value is not None:
                values.append(value)
        return median(values)

    def limited(self, model: str, work: str, level: Any) -> bool:
        return any(r["generator_limited"] for r in self.groups[("matrix", model, work, level)])
