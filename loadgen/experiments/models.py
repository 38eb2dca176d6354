"""Measure what the server models allow, with a simple closed-loop client.

    python -m loadgen models [--rounds 7] [--segment 0.6] [--json FILE]     # make bench-models

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

from loadgen.analysis.bounds import bound
from loadgen.harness.calibration import calibrate_works
from loadgen.harness.server import ServerProcess, model_args
from servers import MODELS, available_cores, baseline
from servers.protocol import DEFAULT_PREFIX
from servers.work import ECHO, Work, parse

REPLY_TIMEOUT_S = 1.0
CPU_SECONDS = 0.002  # the CPU work is cpu=2ms, calibrated to an iteration count
CPU, IO, BLOCK = parse("cpu=2ms"), parse("io=5ms"), parse("block=5ms")
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


class Client:
    """``in_flight`` sockets, one request outstanding on each; every reply checked."""

    def __init__(self, address: tuple[str, int], prefix: bytes, in_flight: int) -> None:
        self.address, self.prefix = address, prefix
        self.selector = selectors.DefaultSelector()
        self.sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(in_flight)]
        self.expected: dict[socket.socket, bytes] = {}
        self.sent_at: dict[socket.socket, float] = {}
        self.sequence = 0
        for sock in self.sockets:
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ)
            self.send(sock)

    def send(self, sock: socket.socket) -> None:
        self.sequence += 1
        payload = f"request {self.sequence} from {sock.fileno()}".encode()
        self.expected[sock] = self.prefix + payload
        self.sent_at[sock] = time.monotonic()
        sock.sendto(payload, self.address)

    def receive(self, latencies: list[float]) -> int:
        """Read what came within 0.1 s; each right reply is timed and its socket asks again.
        Anything else is a late reply to a request already counted as lost."""
        replies = 0
        for key, _ in self.selector.select(timeout=0.1):
            sock = key.fileobj
            while True:
                try:
                    reply = sock.recv(4096)
                except BlockingIOError:
                    break
                if reply == self.expected.get(sock):
                    replies += 1
                    latencies.append(time.monotonic() - self.sent_at[sock])
                    self.send(sock)
        return replies

    def resend_lost(self, now: float) -> int:
        """Count as lost each request unanswered for REPLY_TIMEOUT_S, and ask again."""
        lost = [sock for sock in self.sockets if now - self.sent_at[sock] > REPLY_TIMEOUT_S]
        for sock in lost:
            self.send(sock)
        return len(lost)

    def close(self) -> None:
        """Collect what is still in flight, so it does not load the next server's segment."""
        outstanding = set(self.sockets)
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        while outstanding and time.monotonic() < deadline:
            for key, _ in self.selector.select(timeout=0.05):
                with contextlib.suppress(BlockingIOError):
                    while key.fileobj.recv(4096) != self.expected[key.fileobj]:
                        pass
                    outstanding.discard(key.fileobj)
        for sock in self.sockets:
            self.selector.unregister(sock)
            sock.close()
        self.selector.close()


def closed_loop(
    server: ServerProcess, prefix: bytes, in_flight: int, duration: float, warmup: float
) -> tuple[int, int, float, float, float, float]:
    """Keep ``in_flight`` requests outstanding (one per socket); verify every reply.

    Returns (verified replies, lost, measured seconds, server CPU s, client CPU s, p50 latency
    in us), all counted after the warm-up only.
    """
    client = Client(server.address, prefix, in_flight)
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
        replies += client.receive(latencies)
        if now >= next_timeout_scan:
            next_timeout_scan = now + 0.1
            lost += client.resend_lost(now)
    elapsed = time.monotonic() - measure_from
    server_cpu = cpu_seconds(server) - server_cpu
    client_cpu = time.process_time() - client_cpu
    client.close()
    p50_us = statistics.median(latencies) * 1e6 if latencies else float("nan")
    return replies, lost, elapsed, server_cpu, client_cpu, p50_us


def measure(
    title: str, contenders: list[tuple[str, list[str], bytes]], work: Work, in_flight: int,
    settings: ModelsSettings,
) -> dict[str, list[Figure]]:  # fmt: skip
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
        for _ in range(settings.rounds):
            for label, _, prefix in contenders:
                replies, lost, elapsed, server_cpu, client_cpu, p50_us = closed_loop(
                    servers[label], prefix, in_flight, settings.segment, settings.warmup
                )
                figures[label].append(
                    Figure(
                        label,
                        work.exact_spec,
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
        with start(model_args(baseline().name, CPU)) as server:
            counts.append(server.ready["cpu_iterations"])
            server.stop()
    return counts, (max(counts) - min(counts)) / min(counts)


def against_bounds(
    groups: list[tuple[dict[str, list[Figure]], Work, int]], gil: bool
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
            label = work.spec
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


@dataclass(frozen=True)
class ModelsSettings:
    segment: float = 0.6  # measured seconds per turn
    warmup: float = 0.2  # seconds thrown away per turn
    rounds: int = 7  # turns per server
    json: Path | None = None  # also write every trial's figures here
    strict: bool = False  # exit 1 if an expectation is missed


Groups = dict[str, dict[str, list[Figure]]]


def run_workloads(settings: ModelsSettings, available: list[str], cpu_work: Work) -> Groups:
    """Every workload's servers measured in turns: cpu, io at 32 and (the capped models) at
    16 and 64 in flight, a blocking call, and echo against a bare recvfrom/sendto loop."""
    prefix, s = DEFAULT_PREFIX.encode(), settings
    caps = [m for m in available if MODELS[m].workers_meaning == "cap"]

    def every(models: list[str], work: Work) -> list[tuple[str, list[str], bytes]]:
        return [(m, model_args(m, work, 8), prefix) for m in models]

    groups = {
        "cpu": measure(f"CPU work ({cpu_work.exact_spec}), --workers 8, 8 in flight:",
                       every(available, cpu_work), cpu_work, 8, s),
        "io": measure("\nI/O wait (io=5ms), --workers 8, 32 in flight:",
                      every(available, IO), IO, 32, s),
    }  # fmt: skip
    for clients in (16, 64):
        groups[f"io {clients}"] = measure(
            f"\nI/O wait (io=5ms), {clients} in flight, the models with a cap:",
            every([baseline().name, *caps], IO), IO, clients, s,
        )  # fmt: skip
    groups["block"] = measure("\nA blocking call (block=5ms), --workers 8, 16 in flight:",
                              every(available, BLOCK), BLOCK, 16, s)  # fmt: skip
    contenders = [("bare loop", ["-c", BARE_LOOP], b""),
                  *((m, model_args(m, ECHO, None), prefix) for m in available)]  # fmt: skip
    groups["echo"] = measure("\nEcho, 32 in flight, against a bare recvfrom/sendto loop:",
                             contenders, ECHO, 32, s)  # fmt: skip
    return groups


def model_checks(groups: Groups, available: list[str], gil: bool) -> list[tuple[str, float, bool]]:
    """The expectations each model's figures are held to, from the registry's traits."""
    cpu, echo, checks = groups["cpu"], groups["echo"], []
    base = baseline().name
    for m in (m for m in available if m != base):
        value = paired_ratio(cpu, m, base)
        if MODELS[m].computes_in_parallel(gil):
            checks.append((f"cpu: {m} >= 1.5x {base}", value, value >= 1.5))
            cores = median(cpu[m]).server_cores
            checks.append((f"cpu: {m} >= 1.6 server cores", cores, cores >= 1.6))
            if not MODELS[m].forks:
                processes = max(f.processes for f in cpu[m])
                checks.append((f"cpu: {m} in ONE process", processes, processes == 1))
        else:
            checks.append((f"cpu: {m} <= 1.15x {base}", value, value <= 1.15))
        for kind in ("io", "block"):
            value = paired_ratio(groups[kind], m, base)
            if kind in MODELS[m].overlaps:
                checks.append((f"{kind}: {m} >= 6x {base}", value, value >= 6))
            else:
                checks.append((f"{kind}: {m} <= 1.2x {base}", value, value <= 1.2))
    checks += hand_off_checks(groups, available, base)
    value = paired_ratio(echo, base, "bare loop")
    checks.append((f"echo: {base} >= 0.5x bare loop, replies/s", value, value >= 0.5))
    value = paired_capacity_ratio(echo, base, "bare loop")
    checks.append(("echo: same, capacity from CPU per reply", value, value >= 0.5))
    return checks


def hand_off_checks(groups: Groups, available: list[str], base: str) -> list:
    """What a hand-off may cost (the floors the models-at-their-bound issue set): echo from a
    model that hands each request on, or caps requests in progress, stays above a floor; a
    variant is no slower than the model it varies; handing CPU work on keeps p50 near the
    forked model that does not."""
    cpu, echo, checks = groups["cpu"], groups["echo"], []
    direct = [m for m in available if MODELS[m].forks and not MODELS[m].hands_off]
    for m in available:
        model, rate = MODELS[m], median(echo[m]).replies_per_s
        # The standard library's interpreter pool alone answers about 11,000 calls/s here
        # (docs/measurements.md): a hop between interpreters gets a floor of its own.
        floor = (15_000 if model.forks else 5_000) if model.hands_off else (
            45_000 if model.workers_meaning == "cap" else 0)  # fmt: skip
        if floor:
            checks.append((f"echo: {m}, 32 in flight >= {floor:,}/s", rate, rate >= floor))
        if model.variant_of in echo:
            value = paired_ratio(echo, m, model.variant_of)
            checks.append((f"echo: {m} >= {model.variant_of}", value, value >= 1.0))
        if model.hands_off and direct:
            value = paired_ratio(cpu, m, base)
            checks.append((f"cpu: {m} >= 1.6x {base}", value, value >= 1.6))
            p50 = statistics.median(f.p50_us for f in cpu[m]) / statistics.median(
                f.p50_us for f in cpu[direct[0]]
            )
            checks.append((f"cpu: {m} p50 <= 1.3x that of {direct[0]}", p50, p50 <= 1.3))
    return checks


def main(settings: ModelsSettings) -> int:
    print(
        f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
        f"{settings.rounds} rounds of {settings.segment} s per server after {settings.warmup} s "
        "warm-up; medians shown; ratios are medians of same-round ratios",
        flush=True,
    )
    counts, spread = calibration_spread(5)
    print(f"the servers' own calibration of cpu=2ms over 5 starts: {counts} iterations, "
          f"spread {spread:.1%}")  # fmt: skip
    cpu_work = calibrate_works([CPU]).of(CPU)
    print(f"every model gets the same CPU work: cpu=2ms calibrated here once, "
          f"{cpu_work.exact_spec}\n")  # fmt: skip
    available = [m for m in MODELS if MODELS[m].unavailable_reason() is None]
    for m in MODELS:
        if m not in available:
            print(f"skipping {m}: {MODELS[m].unavailable_reason()}")
    groups = run_workloads(settings, available, cpu_work)
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    checks = model_checks(groups, available, gil)
    checks.append(("calibration: 5 starts within 10%", spread, spread <= 0.10))
    workloads = [(groups["cpu"], cpu_work, 8), (groups["io"], IO, 32),
                 *((groups[f"io {c}"], IO, c) for c in (16, 64)),
                 (groups["block"], BLOCK, 16), (groups["echo"], ECHO, 32)]  # fmt: skip
    checks += against_bounds(workloads, gil)
    print("\nexpectations:")
    for text, value, ok in checks:
        print(f"  {'ok  ' if ok else 'MISS'} {text:44} measured {value:.2f}")
    if settings.json:
        figures = [asdict(f) for group in groups.values() for fs in group.values() for f in fs]
        settings.json.write_text(json.dumps({
            "calibration_counts": counts, "figures": figures,
            "checks": [{"check": t, "value": v, "ok": ok} for t, v, ok in checks],
        }, indent=1))  # fmt: skip
    missed = [text for text, _, ok in checks if not ok]
    return 1 if missed and settings.strict else 0
