"""Parsing and running the per-request workload."""

from __future__ import annotations

import time

import pytest

from servers.work import (
    MAX_CHECKPOINTS,
    MIN_CHECKPOINT_ITERATIONS,
    Work,
    burn,
    calibrate,
    iterations_per_second,
    parse,
)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("echo", Work()),
        ("", Work()),
        ("cpu=2ms", Work(cpu_iterations=None, cpu_seconds=0.002)),
        ("cpu=150000it", Work(cpu_iterations=150000)),
        ("io=5ms", Work(io_seconds=0.005)),
        ("io=250us", Work(io_seconds=0.00025)),
        ("cpu=1ms,io=5ms", Work(cpu_iterations=None, cpu_seconds=0.001, io_seconds=0.005)),
        ("io=1s, cpu=10it", Work(cpu_iterations=10, io_seconds=1.0)),
    ],
)
def test_parse(spec, expected):
    assert parse(spec) == expected


@pytest.mark.parametrize(
    "spec",
    [
        "cpu",
        "cpu=",
        "cpu=2",
        "cpu=2h",
        "gpu=1ms",
        "cpu=-1ms",
        "cpu=0ms",
        "io=3it",
        "cpu=1.5it",
        "cpu=1ms,cpu=2ms",
        "io=61s",
        "echo,io=1ms",
    ],
)
def test_parse_rejects(spec):
    with pytest.raises(ValueError):
        parse(spec)


def test_specs_round_trip_and_the_exact_spec_names_iterations():
    work = Work(cpu_iterations=43000, cpu_seconds=0.002, io_seconds=0.005)
    assert work.spec == "cpu=2ms,io=5ms"
    assert work.exact_spec == "cpu=43000it,io=5ms"
    assert parse(work.exact_spec) == Work(cpu_iterations=43000, io_seconds=0.005)
    assert parse("io=0.5ms").spec == "io=500us"


def test_calibration_turns_time_into_iterations_once():
    work = calibrate(parse("cpu=2ms,io=1ms"))
    assert work.calibrated and work.cpu_iterations > 0
    assert work.spec == "cpu=2ms,io=1ms"
    assert calibrate(work) is work  # already an iteration count: nothing to measure
    explicit = parse("cpu=999it")
    assert calibrate(explicit) is explicit


def test_burn_is_deterministic_work():
    assert burn(1000) == burn(1000)
    assert burn(0) == 1


def test_calibration_is_stable_within_a_wide_margin():
    """The 10% agreement is measured by the benchmark; here only gross instability fails."""
    first, second = iterations_per_second(), iterations_per_second()
    assert 0.5 < first / second < 2.0


def test_cpu_work_holds_the_cpu_not_the_clock():
    """burn() is a count of operations calibrated at the best speed: it costs its 50 ms of CPU
    however busy the machine is (contention stretches the wall time, not the CPU time), where a
    spin on the clock would stop after 50 ms of wall time with only its share of that in CPU."""
    work = Work(cpu_iterations=int(iterations_per_second() * 0.05))
    cpu = time.thread_time()
    work.run()
    assert time.thread_time() - cpu > 0.7 * 0.05


def test_io_work_sleeps_without_cpu():
    work = parse("io=50ms")
    wall, cpu = time.perf_counter(), time.thread_time()
    work.run()
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    assert wall >= 0.05 and cpu < 0.02


def test_measured_work_checkpoints_its_computation():
    """Tracing splits the computation into timed pieces that add up to the whole."""
    work = Work(cpu_iterations=100_000)
    cpu_ns, checkpoints = work.run_measured()
    assert 2 <= len(checkpoints) <= MAX_CHECKPOINTS + 1
    times = [t for t, _ in checkpoints]
    cpus = [c for _, c in checkpoints]
    assert times == sorted(times) and cpus == sorted(cpus)
    assert cpus[0] == 0 and cpus[-1] == cpu_ns > 0
    assert cpu_ns <= times[-1] - times[0] + 1_000_000  # no more CPU than time, within a tick
    small = Work(cpu_iterations=MIN_CHECKPOINT_ITERATIONS // 2)
    assert len(small.run_measured()[1]) == 2  # too little work to split: start and end


def test_measured_waiting_has_no_checkpoints():
    assert parse("io=1ms").run_measured() == (0, [])
    assert parse("echo").run_measured() == (0, [])
