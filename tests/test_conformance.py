"""The server conformance suite on every CPython a user may bring: 3.11 to 3.15.

``make pythons`` (which ``make test`` runs first) finds or provides each version and writes
what it has, and why a version is missing, to its listing; here each model runs on each of them
once, through a whole life: the ready event, both codecs, bad input, work a request asks for
(done, or refused past the cap), many clients at once, the
stop and its counts. A version that cannot be had skips with the reason; so does a model the
version cannot run. ``.venv``'s own interpreter runs the whole suite (test_models.py and the
rest), so it is skipped here.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import time
from pathlib import Path

import pytest
from helpers import ROOT, exchange, udp_client, wait_gone

from loadgen.harness import sid
from loadgen.harness.pythons import CACHE, LISTING, WANTED, probe, provided
from servers import MODELS, baseline
from servers.protocol import DEFAULT_PREFIX, ErrorKind, error_reply

pytestmark = pytest.mark.slow
EACH_PYTHON = pytest.mark.parametrize("version", WANTED)
EACH_MODEL = pytest.mark.parametrize("model", list(MODELS))
MAX_SIZE = 100


def interpreter(version: str) -> str:
    """The ``--python`` of ``version``, or a skip saying why there is none."""
    entry = provided().get(version)
    if entry is None:
        pytest.skip(f"{version}: make pythons has not run here (no {LISTING})")
    if entry.python is None:
        pytest.skip(f"{version}: {entry.missing}")
    if entry.source == ".venv":
        pytest.skip(f"{version} is .venv's own interpreter: the whole suite runs on it")
    return entry.python


@functools.cache
def unavailable(python: str) -> dict[str, str | None]:
    return probe(python)["unavailable"]


def runnable(version: str, model: str) -> str:
    python = interpreter(version)
    if reason := unavailable(python).get(model):
        pytest.skip(f"{model} on {version}: {reason}")
    return python


@EACH_PYTHON
@EACH_MODEL
def test_a_model_serves_and_stops_as_specified(start_server, version, model):
    python = runnable(version, model)
    server = start_server(model, "--work", "cpu=1000it", "--max-size", str(MAX_SIZE),
                          "--work-from-request", python=python)  # fmt: skip
    ready = server.ready
    assert ready["python"].startswith(f"{version}.") and ready["model"] == model
    assert ready["cpu_iterations"] == 1000 and ready["workers"] == MODELS[model].workers()
    for codec in ("utf-8", "gbk"):
        text = "你好, 世界! hello"
        assert exchange(server.address, text.encode(codec)) == (DEFAULT_PREFIX + text).encode(codec)
    bad = {ErrorKind.EMPTY: b"", ErrorKind.UNDECODABLE: b"\xff\xfe\x80\x81",
           ErrorKind.TOO_LARGE: b"x" * (MAX_SIZE + 1)}  # fmt: skip
    for kind, datagram in bad.items():
        assert exchange(server.address, datagram) == error_reply(kind, MAX_SIZE)
    # a request's own work, as every model reads it: done, or refused past the cap
    assert exchange(server.address, b"@cpu=500it,io=1ms own") == f"{DEFAULT_PREFIX}own".encode()
    assert exchange(server.address, b"@io=2s x") == error_reply(ErrorKind.OVER_CAP, MAX_SIZE)
    clients = [udp_client() for _ in range(10)]
    try:
        for round_number in range(3):  # ten in flight before any reply is read
            for i, client in enumerate(clients):
                client.sendto(f"{i}/{round_number}".encode(), server.address)
            for i, client in enumerate(clients):
                assert client.recv(2048).decode() == f"{DEFAULT_PREFIX}{i}/{round_number}"
    finally:
        for client in clients:
            client.close()
    tree = server.tree()
    started = time.monotonic()
    stopped = server.stop(signal.SIGTERM)
    assert time.monotonic() - started < 2.0
    assert (stopped["handled"], stopped["forced"], stopped["failed"]) == (3 + 30, 0, 0)
    assert stopped["errors"] == {**{kind.value: 0 for kind in ErrorKind},
                                 "too_large": 1, "undecodable": 1, "empty": 1,
                                 "over_cap": 1}  # fmt: skip
    assert sum(stopped["per_worker"].values()) == 3 + 30
    assert wait_gone(tree, timeout=1.0) == []


@EACH_PYTHON
def test_a_busy_port_is_a_one_line_error(start_server, version):
    python = runnable(version, baseline().name)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        busy = start_server(baseline().name, wait=False, port=str(holder.getsockname()[1]),
                            python=python)  # fmt: skip
        assert busy.proc.wait(30) == 2
        lines = [line for line in busy.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "in use" in lines[0], lines


@EACH_PYTHON
@pytest.mark.parametrize("model", [name for name, model in MODELS.items() if model.forks])
def test_forked_workers_die_with_a_killed_main_process(start_server, version, model):
    server = start_server(model, "--work", "io=5ms", python=runnable(version, model))
    workers = server.tree()[1:]
    assert workers
    server.proc.kill()  # SIGKILL: no handler runs, the kernel ends the workers (PDEATHSIG)
    server.proc.wait(5)
    assert wait_gone(workers, timeout=2.0) == []


@EACH_PYTHON
def test_a_killed_worker_process_is_replaced(start_server, version):
    server = start_server("processes", "--workers", "2", python=runnable(version, "processes"))
    victim = server.ready["worker_pids"][0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while victim in (pids := workers(server)) or len(pids) < 2:
        assert time.monotonic() < deadline, f"not replaced within 5 s: {pids}"
        time.sleep(0.05)
    for i in range(4):  # the kernel may hand any of them a datagram: all must answer
        assert exchange(server.address, f"{i}".encode()) == f"{DEFAULT_PREFIX}{i}".encode()
    assert server.stop()["restarts"] == {"process-0": 1, "process-1": 0}


def workers(server) -> list[int]:
    return [process.pid for process in server.tree()[1:]]


@pytest.mark.parametrize("version", [v for v in WANTED if v in sid.VERSIONS])
def test_a_server_in_the_chroot_leaves_nothing_mounted_even_when_killed(start_server, version):
    python = interpreter(version)
    if provided()[version].source != "Debian sid chroot":
        pytest.skip(f"{version} is not the chroot's here")
    root = str(CACHE / "sid")
    server = start_server(baseline().name, python=python)
    assert os.readlink(f"/proc/{server.pid}/root") == root
    inside = Path(f"/proc/{server.pid}/mountinfo").read_text()  # its namespace's, as it sees them
    assert " /proc rw" in inside and " /tmp rw" in inside and f" {ROOT} rw" in inside
    server.proc.kill()
    server.proc.wait(5)
    assert root not in Path("/proc/self/mountinfo").read_text()
