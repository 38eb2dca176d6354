"""What the report expects of the measurements, in one table, and the checks that use it.

Every threshold a finding of the report rests on is here, with what it means, so that a reader
can see (and a change can move) all of them at once. ``EXPECTED`` is the table in use.

A busy machine. A run is flagged when, over its own window, either

- the hypervisor stole more than ``steal_share`` of the CPU time (``/proc/stat``'s steal
  column: other virtual machines ran on our cores), or
- processes outside the bench used more than ``other_cores`` cores: all the CPU time used on
  the machine (user, nice, system and interrupts in ``/proc/stat``) less what the server's
  process tree and the generator used, both measured over the same window. With nothing else
  running it came out within about 0.1 of a core of zero on the two-core development VM
  (echo and cpu=2ms runs, 1 to 64 clients); another developer's tests there showed as 0.6 to
  1.4 cores, and starved the server.

A disturbed run. Busy is one way; the other is a machine that did less work per CPU-second
than it did at calibration: CPU frequency, a busy sibling hyperthread on the host, a
hypervisor's throttling. Steal does not show it, and it is common: on the two-core development
VM the same iteration count cost up to nearly twice the server CPU per request across the
trials of one bench, in about three levels, with steal under 1%. The *work efficiency* of a run
with CPU work says it: the calibrated CPU per request (its iterations at the calibrated speed,
the fastest the machine ran them) over the server CPU actually spent per reply. A run is
disturbed when it is busy or its efficiency falls below ``efficiency``; the bench measures it
again (``retries`` times at most) and keeps every attempt. The threshold, 0.75, sits below
what quiet runs give (a request costs a little more than the calibration's best sample, plus
the model's own handling; psutil's CPU times come in 10 ms ticks, a few percent of a 0.2 s
window) and above the slow levels seen. The low end of quiet runs is the multi-process models
(eight processes switching on two cores, or on one), so the threshold sits close to their own
cost. The figures: docs/measurements.md ("Figures behind choices in the code").

The 1-minute load average is recorded beside them but decides nothing: it averages the last
minute, not the run's window, and counts the bench's own runnable workers (a server whose eight
workers all want a core lifts it far above two on an otherwise idle two-core machine), so it
cannot tell a neighbour from the bench itself; the window's CPU accounting can. Runs without
these figures (schema 1 files, a machine without /proc) are never flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

from loadgen.analysis.results import Run
from loadgen.generator.result import Latency


@dataclass(frozen=True)
class Expectations:
    """The thresholds, grouped by the question they answer."""

    # CPU work against the baseline loop, at the level compared (the highest concurrency).
    parallel_speedup: float = 1.3  # computing in parallel: at least this many times the loop
    turns_speedup: float = 1.15  # taking turns on one core: at most this many times the loop
    turns_cores: float = 1.2  # ... and at most this many cores busy
    # Waiting work (io=, block=) against the baseline loop.
    overlap_clients: int = 16  # compared at the highest level with at least this many clients
    overlap_speedup: float = 5.0  # overlapping the waits: at least this many times the loop
    stall_speedup: float = 1.5  # stalled by a blocking call: at most this many times the loop
    # Sweeps.
    knee_factor: float = 3.0  # p99 past this many times its light-load value: past the knee
    core_gain: float = 1.3  # 1 -> K cores: a parallel model gains more, a turn-taking one less
    # Trust in one run.
    p99_samples: int = 1000  # fewer samples: a p99 that rests on fewer than 10 requests
    steal_share: float = 0.05  # more of the window's CPU time stolen: a busy machine
    other_cores: float = 0.5  # more cores used by processes outside the bench: a busy machine
    efficiency: float = 0.75  # less calibrated CPU per CPU-second spent: a slowed machine
    retries: int = 2  # a disturbed run is measured again at most this many times
    # Against the machine: a model computing in parallel reaches at least this share of the
    # capacity the machine delivered at the time (``MachineProbe.capacity``).
    capacity_share: float = 0.8
    # Two measurements of one quantity (the matrix's speed-up and the core sweep's at the same
    # cores) that differ by more than this share of the larger disagree.
    disagreement: float = 0.2


EXPECTED = Expectations()


def few_samples(latency: Latency) -> bool:
    """Whether the p99 was drawn from fewer samples than the table trusts (unknown: no)."""
    return latency.count is not None and latency.count < EXPECTED.p99_samples


def other_cores(run: Run) -> float | None:
    """Cores used over the run's window by processes other than its server and generator."""
    machine = run.machine
    if machine is None or machine.busy_cores is None or run.server.cores_used is None:
        return None
    return machine.busy_cores - run.server.cores_used - run.loadgen.generator.cpu_cores


def busy_reasons(run: Run) -> list[str]:
    """Why the machine counts as busy during ``run`` (empty: it did not, or cannot tell)."""
    if run.machine is None:
        return []
    reasons = []
    steal = run.machine.steal_share
    if steal is not None and steal > EXPECTED.steal_share:
        reasons.append(f"{steal:.0%} of the CPU time stolen")
    others = other_cores(run)
    if others is not None and others > EXPECTED.other_cores:
        reasons.append(f"{others:.1f} cores used by other processes")
    return reasons


def parallel_floor(capacity: float | None) -> float:
    """The least speed-up over the baseline that counts as computing in parallel: the fixed
    ``parallel_speedup``, or ``capacity_share`` of what the machine delivered (None: not
    read), whichever is higher."""
    return max(EXPECTED.parallel_speedup, EXPECTED.capacity_share * (capacity or 0.0))


def efficiency(run: Run, iterations_per_second: float | None) -> float | None:
    """Calibrated CPU per request over the server CPU spent per reply (None: no CPU work, no
    calibration, or nothing measured). 1.0: the machine ran the work at its calibrated speed."""
    iterations = run.work.cpu_iterations  # a typed Work: read once, with the file
    cores, rate = run.server.cores_used, run.loadgen.throughput_rps
    if not iterations or not iterations_per_second or not cores or not rate:
        return None
    return iterations / iterations_per_second * rate / cores


def disturbances(run: Run, iterations_per_second: float | None) -> list[str]:
    """Why ``run`` was disturbed, with the evidence (empty: it was not, or cannot tell): the
    machine was busy, or it did the CPU work well below its calibrated speed."""
    reasons = busy_reasons(run)
    done = efficiency(run, iterations_per_second)
    if done is not None and done < EXPECTED.efficiency:
        # efficiency() had both figures, so neither is None nor zero here
        spent = run.server.cores_used / run.loadgen.throughput_rps * 1e6  # type: ignore[operator]
        calibrated = spent * done
        reasons.append(f"work efficiency {done:.2f} ({spent:,.0f} µs of server CPU per reply "
                       f"for {calibrated:,.0f} µs of calibrated work)")  # fmt: skip
    return reasons
