"""Supervised workers: a worker that dies is replaced; one that keeps dying stops the server."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from helpers import ROOT, exchange, udp_client, wait_gone

from servers.protocol import DEFAULT_PREFIX
from servers.supervision import RESTART_LIMIT

REPLACED_WITHIN_S = 1.5


def workers_of(server) -> set[int]:
    pids = set()
    for child in psutil.Process(server.proc.pid).children():
        with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):  # reaped as we look
            if child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
                pids.add(child.pid)
    return pids


def wait_for_workers(server, count: int, gone: set[int]) -> set[int]:
    """Wait until ``count`` live workers, none of them in ``gone``; return their pids."""
    deadline = time.monotonic() + REPLACED_WITHIN_S
    while time.monotonic() < deadline:
        pids = workers_of(server)
        if len(pids) == count and not pids & gone:
            return pids
        time.sleep(0.02)
    raise AssertionError(f"not {count} fresh workers within {REPLACED_WITHIN_S} s: "
                         f"{workers_of(server)}, killed {gone}")  # fmt: skip


def test_a_killed_process_worker_is_replaced_and_serving_goes_on(start_server):
    server = start_server("processes", "--workers", "2")
    victim = server.ready["worker_pids"][0]
    os.kill(victim, signal.SIGKILL)
    wait_for_workers(server, 2, {victim})
    for i in range(5):  # the kernel may hand any of them a datagram: all must answer
        assert (
            exchange(server.address, f"after {i}".encode()) == f"{DEFAULT_PREFIX}after {i}".encode()
        )
    stopped = server.stop()
    assert stopped["restarts"] == {"process-0": 1, "process-1": 0}
    assert stopped["handled"] == 5
    assert "worker process-0 ended (exit code -9); restarting" in server.stderr


@pytest.mark.slow
def test_workers_that_keep_dying_stop_the_server_with_status_one(start_server):
    server = start_server("processes", "--workers", "2")
    killed: set[int] = set()
    for _ in range(RESTART_LIMIT):
        pids = wait_for_workers(server, 2, killed) if killed else workers_of(server)
        survivors = [psutil.Process(pid) for pid in pids]
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        killed.add(victim)
    assert server.proc.wait(10) == 1
    event = server.next_event()
    assert event["event"] == "stopped" and sum(event["restarts"].values()) == RESTART_LIMIT - 1
    assert f"{RESTART_LIMIT} workers died within" in server.stderr
    assert wait_gone(survivors, timeout=2.0) == []  # the one left alive went with the server


@pytest.mark.slow
def test_a_killed_pool_worker_is_replaced_and_its_lost_requests_are_counted(start_server):
    server = start_server("procpool", "--workers", "2", "--work", "io=300ms")
    with udp_client() as client:  # two requests in the pool when a worker dies
        for i in range(2):
            client.sendto(f"doomed {i}".encode(), server.address)
        time.sleep(0.1)
        victim = server.ready["worker_pids"][0]
        os.kill(victim, signal.SIGKILL)
        wait_for_workers(server, 2, {victim})
        answered = []
        with contextlib.suppress(TimeoutError):  # the one on the live worker may still come
            client.settimeout(0.5)
            answered.append(client.recv(2048))
    for i in range(5):
        assert (
            exchange(server.address, f"after {i}".encode()) == f"{DEFAULT_PREFIX}after {i}".encode()
        )
    stopped = server.stop()
    assert stopped["restarts"] == {"pool-0": 1, "pool-1": 0}  # the other one serves on
    assert stopped["failed"] + len(answered) == 2 and stopped["failed"] >= 1
    assert stopped["handled"] == 5 + len(answered)
    assert "worker pool-0 ended (exit code -9); restarting" in server.stderr


ORPHAN = """
import multiprocessing, os, sys, time
from servers.runtime import become_worker_process

def late_worker():
    time.sleep(0.5)  # scheduled late: its parent is gone before it gets here
    become_worker_process()
    time.sleep(30)

if __name__ == "__main__":
    worker = multiprocessing.get_context("fork").Process(target=late_worker)
    worker.start()
    print(worker.pid, flush=True)
    os.kill(os.getpid(), 9)
"""


@pytest.mark.slow
def test_a_worker_whose_parent_died_before_it_first_ran_does_not_outlive_it(tmp_path):
    """PR_SET_PDEATHSIG only covers a parent that dies after it is set: a worker that starts
    late must compare with the pid its parent had, not ask getppid() (by then, init's)."""
    script = tmp_path / "orphan.py"
    script.write_text(ORPHAN)
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True,
                          text=True, timeout=30)  # fmt: skip
    worker = psutil.Process(int(done.stdout.split()[0]))
    assert wait_gone([worker], timeout=3.0) == []
