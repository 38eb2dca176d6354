"""What the one-thread models (asyncio, uvloop, gevent; greenlet's stop) show, against each other.

Every timing here compares two things measured in the same test, or is a lower bound a sleep
cannot beat: a busy machine only makes things slower, so neither can fail from noise.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from helpers import runnable_models, udp_client

from servers import MODELS
from servers.protocol import DEFAULT_PREFIX
from servers.stopping import STOP_GRACE_S

pytestmark = pytest.mark.slow  # every test here takes seconds: real processes

EVENT_LOOP_MODELS = [name for name in ("asyncio", "uvloop") if name in MODELS]
ONE_THREAD_MODELS = ["gevent", *EVENT_LOOP_MODELS]
# One thread that stops its own way, a request in progress at most each: its grace period
OWN_STOP_MODELS = [*EVENT_LOOP_MODELS, *(name for name in ("greenlet",) if name in MODELS)]


def burst(address: tuple[str, int], count: int) -> float:
    """Send ``count`` requests at once from as many clients; seconds until every reply is in."""
    clients = [udp_client() for _ in range(count)]
    try:
        start = time.perf_counter()
        for i, client in enumerate(clients):
            client.sendto(f"request {i}".encode(), address)
        for i, client in enumerate(clients):
            assert client.recv(2048) == f"{DEFAULT_PREFIX}request {i}".encode()
        return time.perf_counter() - start
    finally:
        for client in clients:
            client.close()


def wait_until_read(port: int, timeout: float = 5.0) -> None:
    """Wait until the server has taken every datagram out of its socket's receive queue.

    /proc/net/udp shows each socket's queue (hex ``tx_queue:rx_queue``): zero means every
    request sent is now in the server's hands, without guessing with a sleep.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and int(fields[4].split(":")[1], 16) == 0:
                return
        time.sleep(0.01)
    raise AssertionError(f"the server on port {port} left datagrams unread for {timeout} s")


@pytest.mark.parametrize("model", runnable_models(EVENT_LOOP_MODELS))
def test_at_most_n_requests_are_in_progress(start_server, model):
    """12 requests of io=50ms with --workers 4 take three rounds; without the cap, one."""
    capped = start_server(model, "--work", "io=50ms", "--workers", "4")
    capped_s = burst(capped.address, 12)
    assert capped.stop()["handled"] == 12
    free = start_server(model, "--work", "io=50ms")
    free_s = burst(free.address, 12)
    free.stop()
    assert capped_s >= 3 * 0.05  # the fourth request cannot start before one of the first ends
    assert capped_s > 2 * free_s


@pytest.mark.parametrize("model", runnable_models(ONE_THREAD_MODELS))
def test_a_blocking_call_stalls_the_one_thread_and_a_wait_does_not(start_server, model):
    """block=40ms answers 6 concurrent requests one after another; io=40ms overlaps them."""
    blocked = start_server(model, "--work", "block=40ms")
    blocked_s = burst(blocked.address, 6)
    blocked.stop()
    waiting = start_server(model, "--work", "io=40ms")
    waiting_s = burst(waiting.address, 6)
    waiting.stop()
    assert blocked_s >= 6 * 0.04  # one after another: a sleep is never shorter than asked
    assert blocked_s > 2.5 * waiting_s  # the waits overlapped: about 1 x 40 ms against 6 x


@pytest.mark.parametrize("model", runnable_models(OWN_STOP_MODELS))
def test_sigterm_lets_requests_in_progress_finish(start_server, model):
    server = start_server(model, "--work", "io=300ms")
    with udp_client() as client:
        for i in range(8):
            client.sendto(f"in flight {i}".encode(), server.address)
        wait_until_read(server.ready["port"])
        started = time.monotonic()
        stopped = server.stop(signal.SIGTERM)  # also checks: the stopped event, then exit 0
        elapsed = time.monotonic() - started
        replies = sorted(client.recv(2048) for _ in range(8))
    assert replies == sorted(f"{DEFAULT_PREFIX}in flight {i}".encode() for i in range(8))
    assert stopped["handled"] == 8 and stopped["forced"] == 0
    assert elapsed < STOP_GRACE_S  # it waited for the requests, not for the grace period


@pytest.mark.parametrize("model", runnable_models(OWN_STOP_MODELS))
@pytest.mark.parametrize("signals", [1, 2], ids=["once", "twice"])
def test_sigterm_ends_what_outlasts_the_grace_period(start_server, model, signals):
    """Requests waiting 30 s are ended after the grace period (at once if asked twice)."""
    server = start_server(model, "--work", "io=30s")
    with udp_client() as client:
        for i in range(4):
            client.sendto(f"slow {i}".encode(), server.address)
        wait_until_read(server.ready["port"])
        started = time.monotonic()
        if signals == 2:  # two different signals: two of the same may merge into one
            server.proc.send_signal(signal.SIGINT)
        stopped = server.stop(signal.SIGTERM, timeout=STOP_GRACE_S + 5)
        elapsed = time.monotonic() - started
    assert stopped["forced"] == 4 and stopped["handled"] == 0
    if signals == 1:
        assert elapsed >= STOP_GRACE_S  # the grace period was granted
    else:
        assert elapsed < STOP_GRACE_S  # the second signal skipped it
