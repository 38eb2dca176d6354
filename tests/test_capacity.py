"""The capacity probe: readings of the right shape, and no process left behind."""

from __future__ import annotations

import psutil
import pytest

from loadgen.harness.capacity import Probe
from servers import available_cores

pytestmark = pytest.mark.slow  # every test here takes seconds: real processes


def test_a_probe_reads_the_machine_and_leaves_nothing_behind():
    with Probe(phase_s=0.05) as probe:
        pids = [process.pid for process in probe.processes]
        readings = [probe.read() for _ in range(2)]
    for reading in readings:
        assert reading.workers == available_cores() and reading.solo_rate > 0
        # each process gets at most a core: together at most the cores, give or take timing
        assert 0 < reading.capacity <= 1.3 * reading.workers
        assert 0 < reading.cpu_share <= 1.05
    assert not [pid for pid in pids if psutil.pid_exists(pid)
                and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]  # fmt: skip
