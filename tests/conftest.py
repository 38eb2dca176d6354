"""Fixtures: run a server model as a real subprocess on port 0, driven by its events.

Helpers that are not fixtures are in helpers.py. Tests marked ``slow`` start real servers,
benches or processes; ``pytest -m "not slow"`` is the quick loop.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
