"""Measure what the server models allow, with a simple closed-loop client.

    python tests/model_figures.py [--rounds 7] [--segment 0.6] [--json FILE]

This is a benchmark, not a test: it prints figures and checks them against the expectations of
the servers issue, and exits 0 either way (``--strict`` exits 1 when an expectation is missed).
Each server runs as a real subprocess on port 0, exactly as a user starts it; the client keeps a
fixed number of datagrams in flight, one per socket, verifies every reply byte for byte and
counts a reply missing after 1 s as lost. The servers of one workload are all started first and
the load visits them in turn, in short segments, round after round (see ``measure``). The client
shares this machine's cores with the server, so its own CPU use is printed beside the server's.

The CPU workload is calibrated once, by the harness, and every model gets the identical
iteration count (``cpu=Nit``); five server starts check how well a server's own calibration
agrees with itself. The models whose ``--workers`` is a cap on
requests in progress (gevent, asyncio, uvloop: a greenlet or task per request) keep their default
of 1000: ``--workers 8`` would cap them at 8 in flight, the threads model's limit. Expectations
come from the registry's traits (computes in parallel on this interpreter, overlaps which waits).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import selectors
import socket
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadgen.analysis.bounds import bound  # noqa: E402
from loadgen.harness.calibration import calibrate_works  # noqa: E402
from loadgen.harness.server import ServerProcess, model_args  # noqa: E402
from servers import MODELS, available_cores  # noqa: E402
from servers.protocol import DEFAULT_PREFIX  # noqa: E402

REPLY_TIMEOUT_S = 1.0
CPU_SECONDS = 0.002  # the CPU work is cpu=2ms, calibrated to an iteration count
CLIENT_BOUND_CORES = 0.85  # the client near one full core: it, not the server, sets the pace
BARE_LOOP = """
import socket
import statistics
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 0))
print('{"event": "ready", "host": "127.0.0.1", "port": %d}' % sock.getsockname()[1], flush=True)
while True:
    data, address = sock.recvfrom(2048)
    sock.sendto(data, address)
"""


@dataclass
class Figure:
    label: str
    work: str
    in_flight: int
    replies_per_s: float
    lost: int
    server_cores: float
    client_cores: float
    processes: int
    p50_us: float


def closed_loop(
    server: ServerProcess, prefix: bytes, in_flight: int, duration: float, warmup: float
) -> tuple[int, int, float, float, float, float]:
    """Keep ``in_flight`` requests outstanding (one per socket); verify every reply.

    Returns (verified replies, lost, measured seconds, server CPU s, client CPU s, p50 latency
    in us), all counted after the warm-up only.
    """
    selector = selectors.DefaultSelector()
    sockets = []
    for _ in range(in_flight):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sockets.append(sock)
    expected: dict[socket.socket, bytes] = {}
    sent_at: dict[socket.socket, float] = {}
    sequence = 0

    def send(sock: socket.socket) -> None:
        nonlocal sequence
        sequence += 1
        payload = f"request {sequence} from {sock.fileno()}".encode()
        expected[sock] = prefix + payload
        sent_at[sock] = time.monotonic()
        sock.sendto(payload, server.address)

    for sock in sockets:
        selector.register(sock, selectors.EVENT_READ)
        send(sock)
    replies = lost = 0
    latencies: list[float] = []
    start = time.monotonic()
    measure_from = start + warmup
    end = measure_from + duration
    measuring = False
    server_cpu = client_cpu = 0.0
    next_timeout_scan = start + 0.1
    while (now := time.monotonic()) < end:
        if not measuring and now >= measure_from:
            measuring, replies, lost = True, 0, 0
            latencies.clear()
            measure_from = now
            server_cpu, client_cpu = cpu_seconds(server), time.process_time()
        for key, _ in selector.select(timeout=0.1):
            sock = key.fileobj
            while True:
                try:
                    reply = sock.recv(4096)
                except BlockingIOError:
                    break
                if reply == expected.get(sock):
                    replies += 1
                    latencies.append(time.monotonic() - sent_at[sock])
                    send(sock)
                # anything else is a late reply to a request already counted as lost
        if now >= next_timeout_scan:
            next_timeout_scan = now + 0.1
            for sock in sockets:
                if now - sent_at[sock] > REPLY_TIMEOUT_S:
                    lost += 1
                    send(sock)
    elapsed = time.monotonic() - measure_from
    server_cpu = cpu_seconds(server) - server_cpu
    client_cpu = time.process_time() - client_cpu
    # Drain: collect what is still in flight, so it does not load the next server's segment.
    outstanding = set(sockets)
    deadline = time.monotonic() + REPLY_TIMEOUT_S
    while outstanding and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.05):
            with contextlib.suppress(BlockingIOError):
                while key.fileobj.recv(4096) != expected[key.fileobj]:
                    pass
                outstanding.discard(key.fileobj)
    for sock in sockets:
        selector.unregister(sock)
        sock.close()
    selector.close()
    p50_us = statistics.median(latencies) * 1e6 if latencies else float("nan")
    return replies, lost, elapsed, server_cpu, client_cpu, p50_us


def measure(
    title: str, contenders: list[tuple[str, list[str], bytes]], work: str, in_flight: int, args
) -> dict[str, list[Figure]]:
    """Start every contender, then measure them in turn, in short segments, round after round.

    This machine's speed drifts by tens of percent within seconds (shared hardware), so a
    model measured for ten seconds after another is not compared fairly. Instead all servers
    stay up (idle ones block in recvfrom and cost nothing) and the load moves from one to the
    next every segment; ratios are taken within a round, a few seconds apart at most.
    """
    print(title, flush=True)
    figures: dict[str, list[Figure]] = {label: [] for label, _, _ in contenders}
    servers: dict[str, ServerProcess] = {}
    try:
        for label, command, _ in contenders:
            servers[label] = start(command)
        for _ in range(args.rounds):
            for label, _, prefix in contenders:
                replies, lost, elapsed, server_cpu, client_cpu, p50_us = closed_loop(
                    servers[label], prefix, in_flight, args.segment, args.warmup
                )
                figures[label].append(
                    Figure(
                        label,
                        work,
                        in_flight,
                        replies / elapsed,
                        lost,
                        server_cpu / elapsed,
                        client_cpu / elapsed,
                        servers[label].sample().processes,
                        p50_us,
                    )
                )
    finally:
        for label, server in servers.items():  # the bare loop has no stop path: just end it
            server.stop_or_none() if label in MODELS else server.close()
    for label, rounds in figures.items():
        middle = median(rounds)
        low, high = min(f.replies_per_s for f in rounds), max(f.replies_per_s for f in rounds)
        cpu_per_reply = statistics.median(f.server_cores / f.replies_per_s for f in rounds)
        client_bound = " (client-bound)" if middle.client_cores > CLIENT_BOUND_CORES else ""
        print(
            f"  {label:16} {middle.replies_per_s:9.0f} replies/s (min {low:.0f}, max {high:.0f})"
            f"  p50 {statistics.median(f.p50_us for f in rounds):7.0f} us"
            f"  lost {sum(f.lost for f in rounds)}"
            f"  server {middle.server_cores:.2f} cores, {cpu_per_reply * 1e6:.1f} us CPU/reply;"
            f"  client {middle.client_cores:.2f} cores{client_bound}",
            flush=True,
        )
    return figures


def median(figures: list[Figure]) -> Figure:
    ordered = sorted(figures, key=lambda f: f.replies_per_s)
    return ordered[len(ordered) // 2]


def paired_capacity_ratio(figures: dict[str, list[Figure]], label: str, baseline: str) -> float:
    """For one-thread servers: capacity is 1 / (CPU per reply); compare that, round by round.

    When the client saturates its own core first, replies/s says how fast the client is, not
    the server; the server's CPU per reply still says how much more the server could answer.
    """
    ratios = [
        (theirs.server_cores / theirs.replies_per_s) / (mine.server_cores / mine.replies_per_s)
        for mine, theirs in zip(figures[label], figures[baseline], strict=True)
    ]
    return statistics.median(ratios)


def paired_ratio(figures: dict[str, list[Figure]], label: str, baseline: str) -> float:
    """Median over rounds of label's rate divided by the baseline's rate in the same round."""
    ratios = [
        mine.replies_per_s / theirs.replies_per_s
        for mine, theirs in zip(figures[label], figures[baseline], strict=True)
    ]
    return statistics.median(ratios)


def start(args: list[str]) -> ServerProcess:
    """A ready server: ``python -m servers ARGS``, or a script when ARGS starts with -c."""
    server = ServerProcess(args, script=args if args[0] == "-c" else None)
    server.wait_ready()
    return server


def cpu_seconds(server: ServerProcess) -> float:
    sample = server.sample()
    return sample.cpu_user_s + sample.cpu_system_s


def calibration_spread(starts: int) -> tuple[list[int], float]:
    """Start the server several times with cpu=2ms and compare the iteration counts."""
    counts = []
    for _ in range(starts):
        with start(model_args("blocking", "cpu=2ms")) as server:
            counts.append(server.ready["cpu_iterations"])
            server.stop()
    return counts, (max(counts) - min(counts)) / min(counts)


def against_bounds(
    groups: list[tuple[dict[str, list[Figure]], str, int]], gil: bool
) -> list[tuple[str, float, bool]]:
    """Print every model's median against its bound (loadgen.analysis.bounds: what the model
    could give by what it is); echo against the bare loop measured in the same rounds. Returns
    the checks of the models-at-their-bound issue."""
    print(f"\nagainst the bound (--workers 8; gevent, asyncio, uvloop keep their cap):\n"
          f"  {'model':16} {'workload':12} {'in flight':>9} {'replies/s':>10} {'bound':>9} "
          f"{'ratio':>6}")  # fmt: skip
    checks, ratios = [], {}
    for figures, work, clients in groups:
        floor = median(figures["bare loop"]).replies_per_s if "bare loop" in figures else None
        for model, rounds in figures.items():
            if model not in MODELS:
                continue
            rate = median(rounds).replies_per_s
            most = bound(model, work, clients, 8, available_cores(), gil, CPU_SECONDS) or floor
            label = "cpu=2ms" if work.startswith("cpu=") else work
            ratios[(model, label, clients)] = rate / most if most else float("nan")
            print(f"  {model:16} {label:12} {clients:9} {rate:10,.0f} {most or 0:9,.0f} "
                  f"{ratios[(model, label, clients)]:6.2f}", flush=True)  # fmt: skip
    for (model, label, clients), ratio in ratios.items():
        if (
            label == "io=5ms"
            and "io" in MODELS[model].overlaps
            and (MODELS[model].workers_meaning == "cap" or clients == 32)
        ):
            checks.append((f"io: {model}, {clients} in flight >= 0.9 of its bound", ratio,
                           ratio >= 0.9))  # fmt: skip
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--segment", type=float, default=0.6, help="measured s per turn")
    parser.add_argument("--warmup", type=float, default=0.2, help="s thrown away per turn")
    parser.add_argument("--rounds", type=int, default=7, help="turns per server")
    parser.add_argument("--json", type=Path, help="also write every trial's figures here")
    parser.add_argument("--strict", action="store_true", help="exit 1 if an expectation fails")
    args = parser.parse_args()

    prefix = DEFAULT_PREFIX.encode()
    print(
        f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
        f"{args.rounds} rounds of {args.segment} s per server after {args.warmup} s warm-up; "
        "medians shown; ratios are medians of same-round ratios",
        flush=True,
    )
    counts, spread = calibration_spread(5)
    print(f"the servers' own calibration of cpu=2ms over 5 starts: {counts} iterations, "
          f"spread {spread:.1%}")  # fmt: skip
    cpu_work = calibrate_works(["cpu=2ms"]).exact["cpu=2ms"]
    print(f"every model gets the same CPU work: cpu=2ms calibrated here once, {cpu_work}\n")

    available = [m for m in MODELS if MODELS[m].unavailable_reason() is None]
    for m in MODELS:
        if m not in available:
            print(f"skipping {m}: {MODELS[m].unavailable_reason()}")
    caps = [m for m in available if MODELS[m].workers_meaning == "cap"]
    models = [(m, model_args(m, cpu_work, 8), prefix) for m in available]
    cpu = measure(f"CPU work ({cpu_work}), --workers 8, 8 in flight:", models, cpu_work, 8, args)
    models = [(m, model_args(m, "io=5ms", 8), prefix) for m in available]
    io = measure("\nI/O wait (io=5ms), --workers 8, 32 in flight:", models, "io=5ms", 32, args)
    models = [(m, model_args(m, "io=5ms", 8), prefix) for m in ["blocking", *caps]]
    io_caps = {
        clients: measure(f"\nI/O wait (io=5ms), {clients} in flight, the models with a cap:",
                         models, "io=5ms", clients, args)
        for clients in (16, 64)
    }  # fmt: skip
    models = [(m, model_args(m, "block=5ms", 8), prefix) for m in available]
    block = measure("\nA blocking call (block=5ms), --workers 8, 16 in flight:", models,
                    "block=5ms", 16, args)  # fmt: skip
    contenders = [
        ("bare loop", ["-c", BARE_LOOP], b""),
        *((m, model_args(m, "echo", None), prefix) for m in available),
    ]
    echo = measure(
        "\nEcho, 32 in flight, against a bare recvfrom/sendto loop:", contenders, "echo", 32, args
    )

    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    checks = []
    for m in available[1:]:
        value = paired_ratio(cpu, m, "blocking")
        if MODELS[m].computes_in_parallel(gil):
            checks.append((f"cpu: {m} >= 1.5x blocking", value, value >= 1.5))
            cores = median(cpu[m]).server_cores
            checks.append((f"cpu: {m} >= 1.6 server cores", cores, cores >= 1.6))
        else:
            checks.append((f"cpu: {m} <= 1.15x blocking", value, value <= 1.15))
        for kind, figures in (("io", io), ("block", block)):
            value = paired_ratio(figures, m, "blocking")
            if kind in MODELS[m].overlaps:
                checks.append((f"{kind}: {m} >= 6x blocking", value, value >= 6))
            else:
                checks.append((f"{kind}: {m} <= 1.2x blocking", value, value <= 1.2))
    if "subinterpreters" in cpu:
        processes = max(f.processes for f in cpu["subinterpreters"])
        checks.append(("cpu: subinterpreters in ONE process", processes, processes == 1))
    echo_rate = {m: median(echo[m]).replies_per_s for m in echo}
    for m, floor in (("procpool", 15_000), ("gevent", 45_000)):
        if m in echo_rate:
            checks.append((f"echo: {m}, 32 in flight >= {floor:,}/s", echo_rate[m],
                           echo_rate[m] >= floor))  # fmt: skip
    if {"uvloop", "asyncio"} <= set(echo_rate):
        value = paired_ratio(echo, "uvloop", "asyncio")
        checks.append(("echo: uvloop >= asyncio", value, value >= 1.0))
    if "procpool" in cpu:
        value = paired_ratio(cpu, "procpool", "blocking")
        checks.append(("cpu: procpool >= 1.6x blocking", value, value >= 1.6))
        p50 = statistics.median(f.p50_us for f in cpu["procpool"]) / statistics.median(
            f.p50_us for f in cpu["processes"]
        )
        checks.append(("cpu: procpool p50 <= 1.3x processes'", p50, p50 <= 1.3))
    value = paired_ratio(echo, "blocking", "bare loop")
    checks.append(("echo: blocking >= 0.5x bare loop, replies/s", value, value >= 0.5))
    value = paired_capacity_ratio(echo, "blocking", "bare loop")
    checks.append(("echo: same, capacity from CPU per reply", value, value >= 0.5))
    checks.append(("calibration: 5 starts within 10%", spread, spread <= 0.10))
    groups = [(cpu, cpu_work, 8), (io, "io=5ms", 32), *((f, "io=5ms", c) for c, f in
              io_caps.items()), (block, "block=5ms", 16), (echo, "echo", 32)]  # fmt: skip
    checks += against_bounds(groups, gil)
    print("\nexpectations:")
    for text, value, ok in checks:
        print(f"  {'ok  ' if ok else 'MISS'} {text:44} measured {value:.2f}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "calibration_counts": counts,
                    "figures": [
                        asdict(f)
                        for group in (cpu, io, *io_caps.values(), block, echo)
                        for fs in group.values()
                        for f in fs
                    ],
                    "checks": [{"check": t, "value": v, "ok": ok} for t, v, ok in checks],
                },
                indent=1,
            )
        )
    missed = [text for text, _, ok in checks if not ok]
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
