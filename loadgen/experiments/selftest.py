"""python -m loadgen selftest: what the generator itself costs, and whether it measures right.

Against one echo server of the baseline model (the blocking loop), in alternating rounds (this
machine's speed drifts):

- a bare send/recv loop: 32 sockets, epoll, recv then send, nothing else. Its CPU per
  request is the floor any Python client pays;
- a minimal independent client: the same loop plus a timestamp per request, reporting its own
  replies/s and median latency. It shares no code with the generator;
- the generator: ``python -m loadgen run`` in closed loop, 32 clients, one process, with reply
  verification, accounting and latency recording.

It prints the generator's CPU per request against the bare loop's, its replies/s, and its
throughput and p50 against the minimal client's. A benchmark: it exits 0 whatever it measures.
"""

from __future__ import annotations

import select
import socket
import statistics
import time
from dataclasses import dataclass
from typing import Any

from loadgen.generator.engine import Settings
from loadgen.generator.runner import run
from loadgen.harness.server import start_model
from servers import baseline
from servers.work import ECHO

CLIENTS = 32
COST_LIMIT = 1.2  # the generator's CPU per request against a bare send/recv loop's
PAYLOAD = b"selftest payload " + b"." * 47  # 64 bytes, like the generator's default


def minimal_client(address: tuple[str, int], seconds: float, timed: bool) -> dict[str, Any]:
    """Closed loop over CLIENTS sockets; with ``timed``, a latency per request."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(CLIENTS)]
    poller = select.epoll()
    by_fd = {}
    for sock in socks:
        sock.connect(address)
        sock.setblocking(False)
        poller.register(sock.fileno(), select.EPOLLIN)
        by_fd[sock.fileno()] = sock
    sent_at = {fd: 0 for fd in by_fd}
    latencies: list[int] = []
    replies = 0
    warm_until = time.monotonic() + 0.3
    for fd, sock in by_fd.items():
        sent_at[fd] = time.perf_counter_ns()
        sock.send(PAYLOAD)
    while time.monotonic() < warm_until:  # warm-up, not counted
        for fd, _ in poller.poll(0.1):
            by_fd[fd].recv(2048)
            by_fd[fd].send(PAYLOAD)
    cpu, start = time.process_time(), time.monotonic()
    end = start + seconds
    while time.monotonic() < end:
        for fd, _ in poller.poll(0.1):
            sock = by_fd[fd]
            sock.recv(2048)
            if timed:
                now = time.perf_counter_ns()
                latencies.append(now - sent_at[fd])
                sent_at[fd] = time.perf_counter_ns()
            replies += 1
            sock.send(PAYLOAD)
    elapsed, cpu = time.monotonic() - start, time.process_time() - cpu
    time.sleep(0.05)  # let the last replies land before closing
    for sock in socks:
        sock.close()
    poller.close()
    return {
        "replies_per_s": replies / elapsed,
        "cpu_us_per_request": cpu / replies * 1e6,
        "p50_us": statistics.median(latencies) / 1000 if latencies else None,
    }


def measure_rounds(
    address: tuple[str, int], duration: float, rounds: int
) -> dict[str, list[dict[str, Any]]]:
    """Each round: the bare loop, the minimal timed client, then the generator, in turn."""
    rows: dict[str, list[dict[str, Any]]] = {"bare": [], "minimal": [], "generator": []}
    for round_number in range(rounds):
        rows["bare"].append(minimal_client(address, duration, timed=False))
        rows["minimal"].append(minimal_client(address, duration, timed=True))
        settings = Settings(*address, concurrency=CLIENTS, duration=duration, warmup=0.3)
        result = run(settings)
        rows["generator"].append({
            "replies_per_s": result["throughput_rps"],
            "cpu_us_per_request": result["generator"]["cpu_us_per_request"],
            "p50_us": result["latency_us"]["p50"],
            "accounting_ok": result["accounting_ok"],
            "lost": result["lost"],
        })  # fmt: skip
        line = ", ".join(
            f"{name} {rows[name][-1]['replies_per_s']:,.0f}/s "
            f"{rows[name][-1]['cpu_us_per_request']:.1f} us CPU/req"
            for name in rows
        )
        print(f"  round {round_number + 1}: {line}", flush=True)
    return rows


def checks(rows: dict[str, list[dict[str, Any]]]) -> list[tuple[str, str, bool]]:
    """What the medians must show: (expectation, measured, met)."""

    def med(name: str, key: str) -> float:
        return statistics.median(row[key] for row in rows[name])

    cost = med("generator", "cpu_us_per_request") / med("bare", "cpu_us_per_request")
    throughput = med("generator", "replies_per_s")
    agreement = throughput / med("minimal", "replies_per_s")
    p50_agreement = med("generator", "p50_us") / med("minimal", "p50_us")
    accounting = all(row["accounting_ok"] for row in rows["generator"])
    print("\nmedians:")
    for name in rows:
        print(
            f"  {name:9} {med(name, 'replies_per_s'):9,.0f} replies/s"
            f"  {med(name, 'cpu_us_per_request'):6.1f} us CPU per request"
            + (f"  p50 {med(name, 'p50_us'):.0f} us" if name != "bare" else "")
        )
    return [
        (f"generator CPU per request <= {COST_LIMIT}x the bare loop", f"{cost:.2f}x",
         cost <= COST_LIMIT),
        ("generator >= 50,000 verified replies/s", f"{throughput:,.0f}/s", throughput >= 50_000),
        ("throughput within 10% of the minimal client", f"{agreement:.2f}x",
         abs(agreement - 1) <= 0.10),
        ("p50 latency within 25% of the minimal client", f"{p50_agreement:.2f}x",
         abs(p50_agreement - 1) <= 0.25),
        ("sent == received + lost + in_flight, every round", str(accounting), accounting),
    ]  # fmt: skip


@dataclass(frozen=True)
class SelftestSettings:
    duration: float = 3.0  # measured seconds per round
    rounds: int = 3


def main(settings: SelftestSettings) -> int:
    duration, rounds = settings.duration, settings.rounds
    with start_model(baseline().name, ECHO, 1) as server:
        server.wait_ready()
        print(f"selftest: {rounds} rounds of {duration:g} s each, {CLIENTS} clients, closed "
              f"loop, against the blocking echo server on {server.address[0]}:"
              f"{server.address[1]}", flush=True)  # fmt: skip
        rows = measure_rounds(server.address, duration, rounds)
        server.stop_or_none()
    met = checks(rows)
    print("\nexpectations:")
    for text, value, ok in met:
        print(f"  {'ok  ' if ok else 'MISS'} {text:50} measured {value}")
    return 0
