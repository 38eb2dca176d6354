"""What many test modules use: the models as parameters, a UDP client, waiting for processes.

Imported as ``from helpers import ...`` (pytest puts tests/ on the path); the fixtures live in
conftest.py, which pytest finds by itself.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from servers import MODELS

ROOT = Path(__file__).resolve().parent.parent
SOCKET_TIMEOUT_S = 5.0


def runnable_models(names: list[str] | None = None) -> list:
    """The models as pytest parameters (ids = names); one this interpreter cannot run is
    skipped with the registry's reason (say, uvloop not installed), never left out silently."""
    return [
        pytest.param(name, id=name,
                     marks=pytest.mark.skipif(reason is not None, reason=f"{name}: {reason}"))
        for name in (names if names is not None else list(MODELS))
        for reason in [MODELS[name].unavailable_reason()]
    ]  # fmt: skip


def udp_client(family: int = socket.AF_INET) -> socket.socket:
    client = socket.socket(family, socket.SOCK_DGRAM)
    client.settimeout(SOCKET_TIMEOUT_S)
    return client


def exchange(address: tuple[str, int], payload: bytes) -> bytes:
    with udp_client() as client:
        client.sendto(payload, address)
        return client.recv(65535)


def gone(process: psutil.Process) -> bool:
    """Exited, or a zombie waiting for a parent that is not ours to reap it."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until every process is gone; return those still running at the deadline."""
    deadline = time.monotonic() + timeout
    while (alive := [p for p in processes if not gone(p)]) and time.monotonic() < deadline:
        time.sleep(0.02)
    return alive


# The tiny bench: a few seconds of every kind of run, shared by the whole session (conftest's
# tiny_bench) so that test_bench.py and test_browser.py read one results folder.
TINY = (
    "--models", "blocking,threads", "--work", "io=1ms", "--concurrency", "1,4",
    "--trials", "1", "--duration", "0.2", "--warmup", "0.05", "--load-sweep", "50,100",
)  # fmt: skip


def bench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m loadgen bench ARGS`` from the project's root, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "loadgen", "bench", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip
