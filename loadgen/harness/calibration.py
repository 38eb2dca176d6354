"""Give every model the same work: each ``cpu=<time>`` becomes one ``cpu=<N>it``, measured once.

A server calibrates its own ``cpu=2ms`` at start-up, and two servers would then do different
amounts of work (this machine's speed drifts within seconds). So the harness measures the rate
once, here, and hands every server the same iteration count.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from servers.work import Work, iterations_per_second


@dataclass
class Calibration:
    """``works``: each work as asked, and the same work as every server will do it, told as it
    was asked (``cpu=2ms`` done as ``cpu=21554it``: see ``Work.told_as``); ``measured``: the
    iteration counts measured here, by spec, for the results file's metadata."""

    works: dict[Work, Work] = field(default_factory=dict)
    measured: dict[str, dict[str, float]] = field(default_factory=dict)

    def of(self, asked: Work) -> Work:
        return self.works[asked]


def calibrate_works(works: Iterable[Work], known: Iterable[Work] = ()) -> Calibration:
    """Each work in iterations: as in ``known`` (works calibrated earlier, say a bench's own)
    where it is one of them, else scaled from a known cpu work's rate, else from one
    measurement of this interpreter's rate."""
    known_by_spec = {work.spec: work for work in known if work.calibrated}
    rate = None
    for done in known_by_spec.values():
        if done.cpu_seconds and done.cpu_iterations:
            rate = done.cpu_iterations / done.cpu_seconds
    result = Calibration()
    for work in dict.fromkeys(works):
        if work.spec in known_by_spec:
            result.works[work] = known_by_spec[work.spec]
        elif work.calibrated:
            result.works[work] = work
        else:
            rate = rate or iterations_per_second()
            count = max(1, round(work.cpu_seconds * rate))
            result.works[work] = replace(work, cpu_iterations=count)
            result.measured[work.spec] = {"iterations": count,
                                          "ms": round(work.cpu_seconds * 1000, 3)}  # fmt: skip
    return result
