"""What only the subinterpreters model promises: one process, a worker that dies is reported and
replaced, and a clear reason where it cannot run. The shared contract is in test_models.py."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
from helpers import ROOT, exchange, udp_client

import servers
from servers import MODELS
from servers.protocol import DEFAULT_PREFIX
from servers.subinterpreters import DIE_ON
from servers.supervision import RESTART_LIMIT

MODEL = MODELS["subinterpreters"]
needs_model = pytest.mark.skipif(
    MODEL.unavailable_reason() is not None, reason=str(MODEL.unavailable_reason())
)
PYTHON_3_11 = Path("/root/.pyenv/versions/3.11.7/bin/python3")  # where this machine keeps it


@needs_model
def test_one_process_with_a_thread_per_interpreter_while_computing(start_server):
    server = start_server("subinterpreters", "--workers", "3", "--work", "cpu=20000it")
    clients = [udp_client() for _ in range(6)]
    try:
        for i, client in enumerate(clients):  # all busy computing while the tree is counted
            client.sendto(f"busy {i}".encode(), server.address)
        tree, threads = server.tree(), psutil.Process(server.proc.pid).num_threads()
        for i, client in enumerate(clients):
            assert client.recv(2048) == f"{DEFAULT_PREFIX}busy {i}".encode()
    finally:
        for client in clients:
            client.close()
    assert [process.pid for process in tree] == [server.proc.pid]  # no child process at all
    assert threads == 3 + 1  # one per interpreter, plus the main thread
    stopped = server.stop()
    assert set(stopped["per_worker"]) == {"interp-0", "interp-1", "interp-2"}
    assert stopped["handled"] == 6 and stopped["died"] == []


def _wait_for_deaths(server, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while server.stderr.count(" died: ") < count:
        assert time.monotonic() < deadline, f"not {count} deaths in stderr:\n{server.stderr}"
        time.sleep(0.02)


@pytest.mark.slow
@needs_model
def test_a_dying_interpreter_is_reported_and_replaced_until_they_die_too_often(
    start_server, monkeypatch
):
    """DIE_ON, read by each worker, makes the one that receives that datagram raise."""
    monkeypatch.setenv(DIE_ON, "die now")
    server = start_server("subinterpreters", "--workers", "2")
    answered = 0
    for deaths in range(1, RESTART_LIMIT + 1):
        for i in range(5):  # two alive every time: every request is answered
            assert exchange(server.address, f"{deaths}/{i}".encode()) == (
                f"{DEFAULT_PREFIX}{deaths}/{i}".encode()
            )
            answered += 1
        with udp_client() as client:
            client.sendto(b"die now", server.address)  # no reply: its receiver dies
        _wait_for_deaths(server, deaths)
        assert "RuntimeError: SERVERS_TEST_DIE_ON" in server.stderr  # the worker's traceback
        if deaths < RESTART_LIMIT:
            time.sleep(0.3)  # the supervisor looks every 0.1 s
            assert server.proc.poll() is None  # replaced: still serving
    # Dying RESTART_LIMIT times within the window: the server stops itself, reporting each.
    event = server.next_event(timeout=10)
    assert event is not None and event["event"] == "stopped", (event, server.stderr)
    assert server.proc.wait(10) == 1
    assert len(event["died"]) == RESTART_LIMIT
    assert sum(event["restarts"].values()) == RESTART_LIMIT - 1
    assert event["handled"] == answered  # the dead interpreters' counts survive them
    assert event["forced"] == 0 and "not restarting them again" in server.stderr


def test_unavailable_before_python_3_12(monkeypatch):
    monkeypatch.setattr(servers, "sys", SimpleNamespace(version_info=(3, 11, 7, "final", 0)))
    monkeypatch.setattr(servers.platform, "python_version", lambda: "3.11.7")
    assert MODEL.unavailable_reason() == (
        "needs Python 3.12+ (sub-interpreters with their own GIL, PEP 684); this is 3.11.7"
    )


def test_unavailable_without_an_interpreters_module(monkeypatch):
    monkeypatch.setattr(servers, "sys", SimpleNamespace(version_info=(3, 13, 0, "final", 0)))
    looked_up = []
    monkeypatch.setattr(servers, "_importable", lambda name: looked_up.append(name) and False)
    reason = MODEL.unavailable_reason()
    assert looked_up == ["concurrent.interpreters", "backports.interpreters"]
    assert "not installed" in reason and "pip install 'backports.interpreters" in reason


@pytest.mark.skipif(not PYTHON_3_11.exists(), reason="no Python 3.11 on this machine")
def test_python_3_11_lists_the_model_as_unavailable_and_refuses_it():
    """The registry and --list import nothing beyond the standard library."""
    run = [str(PYTHON_3_11), "-m", "servers"]
    listed = subprocess.run([*run, "--list"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if line.startswith("subinterp"))
    assert "unavailable: needs Python 3.12+" in line and "this is 3.11.7" in line
    refused = subprocess.run(
        [*run, "subinterpreters", "--port", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert refused.returncode == 2 and refused.stdout == ""
    assert "model subinterpreters is unavailable: needs Python 3.12+" in refused.stderr
