"""Give every model the same work: each ``cpu=<time>`` becomes one ``cpu=<N>it``, measured once.

A server calibrates its own ``cpu=2ms`` at start-up, and two servers would then do different
amounts of work (this machine's speed drifts within seconds). So the harness measures the rate
once, here, and hands every server the same iteration count.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from servers.work import iterations_per_second, parse


@dataclass
class Calibration:
    """``exact`` maps each spec to its iteration form; ``measured`` says what was measured."""

    exact: dict[str, str] = field(default_factory=dict)
    measured: dict[str, dict[str, float]] = field(default_factory=dict)


def calibrate_works(works: list[str], known: dict[str, str] | None = None) -> Calibration:
    """Each spec in iterations: from ``known`` where given (say, a bench's own), else scaled
    from a known cpu spec's rate, else from one measurement of this interpreter's rate."""
    known = known or {}
    rate = None
    for spec, exact_spec in known.items():
        asked, done = parse(spec), parse(exact_spec)
        if asked.cpu_seconds and done.cpu_iterations:
            rate = done.cpu_iterations / asked.cpu_seconds
    result = Calibration()
    for spec in dict.fromkeys(works):
        work = parse(spec)
        if spec in known:
            result.exact[spec] = known[spec]
        elif work.calibrated:
            result.exact[spec] = work.exact_spec
        else:
            rate = rate or iterations_per_second()
            count = max(1, round(work.cpu_seconds * rate))
            result.exact[spec] = replace(work, cpu_iterations=count).exact_spec
            result.measured[spec] = {"iterations": count, "ms": round(work.cpu_seconds * 1000, 3)}
    return result
