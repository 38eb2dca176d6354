"""Fixtures: a server model as a real subprocess on port 0, driven by its events; a tiny bench.

Helpers that are not fixtures are in helpers.py. Tests marked ``slow`` start real servers,
benches or processes; ``pytest -m "not slow"`` is the quick loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from subprocess import CompletedProcess

import pytest
from helpers import TINY, bench

from loadgen.harness.server import ServerProcess


@pytest.fixture
def start_server() -> Iterator:
    """Factory: ``start_server("threads", "--work", "io=5ms")`` -> a ready ServerProcess."""
    started: list[ServerProcess] = []

    def start(
        model: str, *args: str, wait: bool = True, port: str = "0", **kwargs
    ) -> ServerProcess:
        server = ServerProcess([model, "--port", port, *args], **kwargs)  # the harness's handle
        started.append(server)
        if wait:
            server.wait_ready()
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture(scope="session")
def tiny_bench(tmp_path_factory) -> tuple[Path, CompletedProcess]:
    """One tiny bench for the whole session: its results folder and the finished command.
    Tests read the folder and may add files of their own, never change what it wrote."""
    out = tmp_path_factory.mktemp("results")
    done = bench(*TINY, "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out, done
