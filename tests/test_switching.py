"""What the greenlet model (servers/switching.py, a hub written by hand) shows, beyond the
conformance suite: its waits overlap in one thread, its cap holds, a blocking call stalls it,
a stop at the cap reads nothing more, and its trace shows the switches (its grace period is
tested with the event loops', in test_coroutines.py).

Timings are lower bounds a sleep cannot beat, or comparisons within one test, or the order
replies come back in: a busy machine only makes things slower, so none fails from noise.
"""

from __future__ import annotations

import json
import signal
import time
from itertools import pairwise

import pytest
from helpers import runnable_models, udp_client
from test_coroutines import burst, wait_until_read

from servers.protocol import DEFAULT_PREFIX

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("model", runnable_models(["greenlet"]))]


def test_waits_overlap_in_one_thread(start_server, model):
    """64 requests of io=100ms at once: well under 64 waits, all on the one hub thread."""
    server = start_server(model, "--work", "io=100ms")
    took = burst(server.address, 64)
    stopped = server.stop()
    assert took >= 0.1  # a wait is never shorter than asked
    assert took < 64 * 0.1 / 4  # one after another would take 6.4 s: they overlapped
    assert stopped["per_worker"] == {"hub": 64} and stopped["forced"] == 0


def test_the_cap_holds_requests_in_progress(start_server, model):
    """--workers 2: four requests of io=200ms take two rounds; with room for four, one."""
    capped = start_server(model, "--work", "io=200ms", "--workers", "2")
    capped_s = burst(capped.address, 4)
    assert capped.stop()["handled"] == 4
    free = start_server(model, "--work", "io=200ms", "--workers", "4")
    free_s = burst(free.address, 4)
    free.stop()
    assert capped_s >= 2 * 0.2  # the third cannot start before one of the first two ends
    assert free_s < capped_s


@pytest.mark.parametrize(
    "work, first", [("io", "echo"), ("block", "slow")], ids=["io switches", "block stalls"]
)
def test_a_blocking_call_stalls_an_echo_sent_after_it_and_a_wait_does_not(
    start_server, model, work, first
):
    """``@io=300ms`` parks its greenlet, so an echo sent just after overtakes it;
    ``@block=300ms`` holds the hub, so the echo waits for it."""
    server = start_server(model, "--work-from-request")
    with udp_client() as client:
        started = time.perf_counter()
        client.sendto(f"@{work}=300ms slow".encode(), server.address)
        client.sendto(b"echo", server.address)
        replies = [client.recv(2048).decode().removeprefix(DEFAULT_PREFIX) for _ in range(2)]
        echoed_s = time.perf_counter() - started if replies[1] == "echo" else None
    server.stop()
    assert replies[0] == first
    if work == "block":  # the echo came back after the blocking call's 300 ms
        assert echoed_s is not None and echoed_s >= 0.3


def test_a_stop_at_the_cap_reads_no_more(start_server, model):
    """At the cap the receiver waits for a place; stopped there, it takes none when a request
    in progress ends (the other still waits): two answered, two left unread, nothing forced."""
    server = start_server(model, "--work-from-request", "--workers", "2")
    with udp_client() as client:
        for i, wait in enumerate(["400ms", "1000ms", "1ms", "1ms"]):
            client.sendto(f"@io={wait} capped {i}".encode(), server.address)
            if i == 1:  # the first two in the server's hands: it is at the cap
                wait_until_read(server.ready["port"])
        stopped = server.stop(signal.SIGTERM)
        replies = [client.recv(2048) for _ in range(stopped["handled"])]
    assert stopped["handled"] == 2 and stopped["forced"] == 0
    assert replies == [f"{DEFAULT_PREFIX}capped {i}".encode() for i in range(2)]


def test_the_trace_shows_a_greenlet_per_request_taking_turns(start_server, model, tmp_path):
    """Eight requests at once, each computing then waiting: a task (greenlet) each; their
    computations never overlap (one thread), their waits do (the switches)."""
    trace_file = tmp_path / "trace.json"
    server = start_server(model, "--work", "cpu=20000it,io=100ms", "--trace", str(trace_file))
    burst(server.address, 8)
    server.stop()
    records = json.loads(trace_file.read_text())["requests"]
    assert len({record["task"] for record in records}) == 8
    computing = sorted((r["checkpoints"][0][0], r["checkpoints"][-1][0]) for r in records)
    assert all(end <= start for (_, end), (start, _) in pairwise(computing))
    waits = sorted((r["checkpoints"][-1][0], r["end_ns"]) for r in records)
    assert any(start < end for (_, end), (start, _) in pairwise(waits))
