"""What the report expects of the measurements, in one table.

Every threshold a finding of the report rests on is here, with what it means, so that a reader
can see (and a change can move) all of them at once. ``EXPECTED`` is the table in use.
"""

from __future__ import annotations

from dataclasses import dataclass


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


EXPECTED = Expectations()
