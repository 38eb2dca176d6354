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

The 1-minute load average is recorded beside them but decides nothing: it averages the last
minute, not the run's window, and counts the bench's own runnable workers (a server whose eight
workers all want a core lifts it far above two on an otherwise idle two-core machine), so it
cannot tell a neighbour from the bench itself; the window's CPU accounting can. Runs without
these figures (schema 1 files, a machine without /proc) are never flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

from loadgen.analysis.results import Latency, Run


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
