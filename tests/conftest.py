"""Shared fixtures: run a server model as a real subprocess on port 0, driven by its events."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from servers import MODELS

ROOT = Path(__file__).resolve().parent.parent
SOCKET_TIMEOUT_S = 5.0
EVENT_TIMEOUT_S = 30.0


def runnable_models(names: list[str] | None = None) -> list:
    """The models as pytest parameters (ids = names); one this interpreter cannot run is
    skipped with the registry's reason (say, uvloop not installed), never left out silently."""
    return [
        pytest.param(name, id=name,
                     marks=pytest.mark.skipif(reason is not None, reason=f"{name}: {reason}"))
        for name in (names if names is not None else list(MODELS))
        for reason in [MODELS[name].unavailable_reason()]
    ]  # fmt: skip


class ServerProcess:
    """A ``python -m servers`` subprocess in its own process group, read through its events."""

    def __init__(self, args: list[str], stdin: int | None = subprocess.DEVNULL):
        self.args = args
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "servers", *args],
            cwd=ROOT,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own group: teardown can end everything it started
        )
        self._events: queue.Queue[dict | None] = queue.Queue()
        self.stderr_lines: list[str] = []
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        self.ready: dict = {}

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            self._events.put(json.loads(line))  # a non-JSON line fails the test loudly
        self._events.put(None)

    def _read_stderr(self) -> None:
        chunks = []  # chunks, not lines: a prompt has no newline yet
        for chunk in iter(lambda: self.proc.stderr.read1(4096), b""):
            chunks.append(chunk)
            self.stderr_lines[:] = b"".join(chunks).decode("utf-8", "replace").splitlines(True)

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    def next_event(self, timeout: float = EVENT_TIMEOUT_S) -> dict | None:
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no event within {timeout} s; stderr:\n{self.stderr}") from None

    def wait_ready(self) -> dict:
        event = self.next_event()
        assert event is not None, f"server exited before ready; stderr:\n{self.stderr}"
        assert event["event"] == "ready", event
        self.ready = event
        return event

    @property
    def address(self) -> tuple[str, int]:
        return self.ready["host"], self.ready["port"]

    def tree(self) -> list[psutil.Process]:
        """The server's main process and every descendant."""
        main = psutil.Process(self.proc.pid)
        return [main, *main.children(recursive=True)]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> dict:
        """Signal the main process; return its stopped event once it has exited."""
        self.proc.send_signal(sig)
        event = self.next_event(timeout)
        assert event is not None and event["event"] == "stopped", (event, self.stderr)
        assert self.proc.wait(timeout) == 0
        return event

    def close(self) -> None:
        """End whatever is left of the group, then release the pipes."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(5)
        for reader in self._readers:
            reader.join(5)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def start_server() -> Iterator:
    """Factory: ``start_server("threads", "--work", "io=5ms")`` -> a ready ServerProcess."""
    started: list[ServerProcess] = []

    def start(
        model: str, *args: str, wait: bool = True, port: str = "0", **kwargs
    ) -> ServerProcess:
        server = ServerProcess([model, "--port", port, *args], **kwargs)
        started.append(server)
        if wait:
            server.wait_ready()
        return server

    yield start
    for server in started:
        server.close()


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
