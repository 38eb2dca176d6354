"""Load from several hosts through Dask: the parts on distinct workers, merged as --procs merges
them, and a lost worker's part counted as lost, never dropped. A LocalCluster (processes, one
thread each) stands in for the hosts; tests/test_hosts.py runs the same across namespaces."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from helpers import ROOT

from loadgen.generator import cluster
from loadgen.generator.engine import Settings
from loadgen.generator.mix import parse_mix
from loadgen.generator.result import LoadResult
from loadgen.generator.runner import TargetError
from loadgen.harness.server import start_model

distributed = pytest.importorskip("distributed", reason="pip install -e '.[distributed]'")

COUNTED = ("sent", "received", "lost", "in_flight")


@pytest.fixture(scope="module")
def local_cluster():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as made:
        yield made


@pytest.fixture
def server():
    with start_model("blocking") as started:
        started.wait_ready()
        yield started


def settings_for(server, **changes) -> Settings:
    host, port = server.address
    return Settings(host, port, **{"concurrency": 4, "procs": 2, "duration": 1.0} | changes)


@pytest.mark.slow
def test_the_parts_run_on_two_workers_and_merge_exactly(local_cluster, server):
    result = cluster.run(settings_for(server, warmup=0.0), local_cluster.scheduler_address)
    stopped = server.stop()
    parts = result["cluster"]["parts"]
    assert len({part["worker"] for part in parts}) == 2  # one part a worker
    for key in COUNTED:
        assert result[key] == sum(part[key] for part in parts)
    assert result["accounting_ok"] and result["lost_parts"] == []
    assert result["sent"] > 1000 and result["lost"] == 0
    assert all(part["late_start_ms"] < 500 for part in parts)
    # No warm-up: the server handled every measured request, and the probe.
    assert stopped["handled"] == result["sent"] + 1 == result["received"] + result["late"] + 1


@pytest.mark.slow
def test_a_mix_merges_its_classes_across_the_hosts(local_cluster):
    with start_model("blocking", extra=("--work-from-request",)) as server:
        server.wait_ready()
        mix = parse_mix("echo:80,io=2ms:20")
        at_leisure = {"mode": "open", "rate": 300.0}  # an echo seldom queues behind a wait
        result = cluster.run(settings_for(server, warmup=0.0, mix=mix, **at_leisure),
                             local_cluster.scheduler_address)  # fmt: skip
    echo, waits = LoadResult.from_dict(result).classes
    assert len({part["worker"] for part in result["cluster"]["parts"]}) == 2
    for key in COUNTED[:3]:
        assert getattr(echo, key) + getattr(waits, key) == result[key]
    assert waits.sent == pytest.approx(0.2 * result["sent"], abs=8)  # a deck per part
    assert waits.sent > 20
    assert waits.latency_us.p50 >= 2000 > echo.latency_us.p50


@pytest.mark.slow
def test_a_lost_worker_is_counted_as_lost_not_dropped(local_cluster, server):
    client = distributed.Client(local_cluster.scheduler_address, set_as_default=False)
    try:
        pids = client.run(os.getpid)
    finally:
        client.close()
    victim_address, victim = sorted(pids.items())[0]
    settings = settings_for(server, duration=2.0, warmup=0.0)
    threading.Timer(1.8, os.kill, (victim, signal.SIGKILL)).start()  # 0.8 s into the window
    result = cluster.run(settings, local_cluster.scheduler_address)
    [lost] = result["lost_parts"]
    assert lost["worker"] == victim_address
    assert lost["last_progress"]["sent"] > 0  # what it had reported is in the totals
    lost_row = next(p for p in result["cluster"]["parts"] if p["worker"] == victim_address)
    assert lost_row["sent"] == lost["last_progress"]["sent"]
    assert lost_row["sent"] == lost_row["received"] + lost_row["lost"]
    for key in COUNTED:
        assert result[key] == sum(part[key] for part in result["cluster"]["parts"])
    assert result["accounting_ok"]
    local_cluster.wait_for_workers(2, timeout=30)  # the nanny brings a new one for the next test


def test_more_parts_than_workers_is_refused(local_cluster, server):
    with pytest.raises(TargetError, match="has 2 worker.*--procs 3 needs one each"):
        cluster.run(settings_for(server, procs=3), local_cluster.scheduler_address)


def test_without_distributed_the_message_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(TargetError, match=r"pip install -e '\.\[distributed\]'"):
        cluster.run(Settings("127.0.0.1", 9), "tcp://127.0.0.1:1")


@pytest.mark.slow
def test_no_scheduler_is_one_line_and_exit_2_within_seconds():
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "loadgen", "run", "--target", "127.0.0.1:9", "--procs", "2",
         "--dask", "tcp://127.0.0.1:1", "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: no Dask scheduler at tcp://127.0.0.1:1")
    assert time.monotonic() - began < cluster.CONNECT_TIMEOUT_S + 10


@pytest.mark.slow
def test_the_bench_takes_its_load_from_the_cluster(local_cluster, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "loadgen", "bench", "--models", "blocking", "--work", "echo",
         "--concurrency", "4", "--trials", "1", "--duration", "0.3", "--warmup", "0.05",
         "--no-load-sweep", "--no-core-sweep", "--no-timeline", "--out", str(tmp_path),
         "--dask", local_cluster.scheduler_address],
        cwd=ROOT, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["metadata"]["settings"]["dask"] == local_cluster.scheduler_address
    [run] = data["runs"]
    assert run["loadgen"]["procs"] == 2 and run["loadgen"]["received"] > 0
    assert len(run["loadgen"]["cluster"]["parts"]) == 2
    assert run["server"]["cores_used"] is not None


def test_parts_go_to_as_many_hosts_as_there_are_first():
    workers = ["tcp://10.0.0.2:4001", "tcp://10.0.0.2:4002", "tcp://10.0.0.3:4001"]
    assert cluster._spread(workers) == [workers[0], workers[2], workers[1]]


def test_a_lost_part_is_booked_from_its_last_report():
    last = {"sent": 10, "received": 7, "lost": 1, "measuring": 1}
    counts = cluster.lost_part(1, "tcp://10.0.0.3:4001", "gone", last)["counts"]
    assert [counts[key] for key in COUNTED] == [10, 7, 3, 0]  # in flight then: lost now
