"""A bench point the machine disturbed is caught, kept and measured again; a quiet one is not.

Real servers and a real hog: a process per core burning CPU, started while the first attempt
of a point is being measured and ended as that attempt is written.
"""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from loadgen.analysis.expectations import disturbances
from loadgen.analysis.results import Metadata, ResultsFile
from loadgen.experiments.bench import Bench, BenchSettings
from loadgen.harness.calibration import calibrate_works
from loadgen.harness.machine import metadata
from loadgen.harness.server import start_model
from servers import available_cores
from servers.work import parse

CPU = parse("cpu=1ms")
HOG = "import time\nend = time.monotonic() + 20\nwhile time.monotonic() < end: pass\n"

pytestmark = pytest.mark.skipif(available_cores() < 2, reason="needs two cores to share")


@pytest.fixture
def bench(tmp_path):
    """A Bench around one blocking server doing 1 ms of calibrated CPU work per request."""
    calibration = calibrate_works([CPU])
    settings = BenchSettings(models=["blocking"], works=[CPU], duration=0.6, warmup=0.05,
                             warmup_max=0.3, min_replies=50, out=tmp_path)  # fmt: skip
    about = metadata(vars(settings), calibration.measured)
    results = ResultsFile(tmp_path, Metadata.from_dict(about, "metadata"))
    with start_model("blocking", calibration.of(CPU)) as server:
        server.wait_ready()
        yield Bench(settings, results), server
        server.stop_or_none()


@pytest.mark.slow
def test_a_hog_in_the_middle_of_a_point_marks_it_disturbed_and_it_is_measured_again(bench):
    bench, server = bench
    hogs: list[subprocess.Popen] = []

    def start_hogs() -> None:
        hogs.extend(subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(available_cores()))

    add_run = bench.results.add_run

    def add_run_then_end_the_hogs(run) -> None:
        add_run(run)
        for hog in hogs:
            hog.kill()
            hog.wait()

    bench.results.add_run = add_run_then_end_the_hogs
    timer = threading.Timer(0.2, start_hogs)  # into the first attempt's measured window
    try:
        timer.start()
        run = bench.point(server, bench.loadgen_settings(server, concurrency=4), "matrix", 0, "t")
    finally:
        timer.cancel()
        for hog in hogs:
            hog.kill()
            hog.wait()
    runs = bench.results.results.runs
    first = runs[0]
    assert len(runs) >= 2 and first.attempt == 0
    reasons = disturbances(first, bench.speed)
    assert reasons and any("other processes" in r or "efficiency" in r for r in reasons)
    assert run is runs[-1] and run.attempt == len(runs) - 1
    assert not disturbances(run, bench.speed)  # the hog was gone: the last attempt is quiet
    assert bench.results.results.counted == (run,) and bench.results.results.superseded[0] is first


@pytest.mark.slow
def test_a_quiet_point_is_measured_once(bench):
    bench, server = bench
    run = bench.point(server, bench.loadgen_settings(server, concurrency=4), "matrix", 0, "t")
    assert bench.results.results.runs == (run,) and run.attempt == 0
    assert not disturbances(run, bench.speed)


@pytest.mark.slow
def test_a_machine_busy_for_longer_than_the_retries_gets_each_point_measured_once(bench):
    """Two points disturbed through every retry: the bench stops retrying until a point is
    quiet, so a busy machine makes the bench no longer, only its figures marked."""
    bench, server = bench
    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(available_cores())]
    try:
        for trial in range(3):
            bench.point(server, bench.loadgen_settings(server, concurrency=4), "matrix", trial, "t")
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    runs = bench.results.results.runs
    assert [run.trial for run in runs] == [0, 0, 0, 1, 1, 1, 2]
    assert all(disturbances(run, bench.speed) for run in runs)
    assert bench.stuck == 3
