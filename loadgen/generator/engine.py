"""The drivers: closed and open loop over many UDP sockets, one engine per generator process.

Closed loop: each virtual client (its own socket, so its own source port) keeps one request in
flight; a reply or a timeout makes it send the next. Throughput then follows the server's speed.

Open loop: requests are *scheduled* at the target rate (uniform or Poisson arrivals) and spread
over the clients' sockets round-robin, and each is sent at its scheduled time whatever the
replies do. Latency is measured from the scheduled time, so if this process stalls, every
request it should have sent meanwhile carries the stall in its latency (coordinated omission
corrected, as wrk2 does); the latency from the actual send is kept beside it, and so is the
lag between schedule and send, which says whether the generator kept up.

Accounting covers the requests sent after the warm-up: each ends as received (a verified
reply), lost (no verified reply within the timeout) or still in flight, so
``sent == received + lost + in_flight`` holds exactly. When the measured time is up, sending
stops and the engine drains: it waits for what is in flight until each request is answered or
times out, so in_flight is normally 0 and every loss is a real one. Throughput counts only the
replies that arrived within the measured time. Late replies, duplicates, corrupt replies
and the server's ``error:`` replies are counted on their own and never become latency samples.
"""

from __future__ import annotations

import collections
import ctypes
import gc
import random
import select
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from loadgen.generator import stats, wire
from servers.protocol import DEFAULT_PREFIX

HOUSEKEEPING_NS = 10_000_000  # timeouts and the per-second series are looked at this often
PROGRESS_NS = 250_000_000
LINGER_NS = 30_000_000  # after the last reply, how long stray duplicates are still counted
PROGRESS_FIELDS = ("sent", "received", "lost", "measuring")


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    mode: str = "closed"
    concurrency: int = 32
    rate: float = 0.0  # open loop: requests per second, all generator processes together
    arrival: str = "uniform"
    duration: float = 10.0
    warmup: float = 1.0
    timeout: float = 1.0
    payload_size: int = 64
    encoding: str = "utf-8"
    prefix: str = DEFAULT_PREFIX
    procs: int = 1
    seed: int = 1

    def clients_of(self, part: int) -> list[int]:
        """The client ids that generator process ``part`` drives."""
        return list(range(part, self.concurrency, self.procs))


def _family(host: str) -> int:
    return socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)[0][0]


def _precise_timers() -> None:
    """Ask Linux for 1 us of timer slack instead of 50: open-loop sends wake closer to schedule.

    Measured here: select() with a 500 us timeout overslept by 126 us at the median with the
    default slack, 53 us with this.
    """
    if sys.platform.startswith("linux"):
        pr_set_timerslack = 29
        ctypes.CDLL(None).prctl(pr_set_timerslack, 1000)


def _open_sockets(settings: Settings, n: int) -> tuple[list[socket.socket], select.epoll]:
    """``n`` connected, non-blocking UDP sockets (one a client, so each its own source port),
    all registered for reading with one epoll."""
    family = _family(settings.host)
    socks = []
    for _ in range(n):
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.connect((settings.host, settings.port))  # replies from anyone else are ignored
        sock.setblocking(False)
        socks.append(sock)
    poller = select.epoll()
    for sock in socks:
        poller.register(sock.fileno(), select.EPOLLIN)
    return socks, poller


def _arrivals(settings: Settings, part: int, n: int, start_ns: int) -> Iterator[float]:
    """Open loop: when this part's requests are scheduled (time.monotonic_ns, from ``start_ns``)
    at its share of the rate, evenly spaced or as Poisson arrivals."""
    rate = settings.rate * n / settings.concurrency
    rng = random.Random(settings.seed + part)
    poisson = settings.arrival == "poisson"
    interval_ns = 1e9 / rate if rate else 0.0
    scheduled = float(start_ns)
    while True:
        yield scheduled
        scheduled += rng.expovariate(rate) * 1e9 if poisson else interval_ns


class _Window:
    """The phases of a run in time (warm-up, measured window, drain), and what the window cost.

    In the drain, after the measured time, nothing more is sent: the engine waits for what is in
    flight until each request is answered or times out.
    """

    def __init__(self, settings: Settings, start_ns: int, on_window: Callable[[str], None] | None):
        self.start_ns = start_ns
        self.measure_ns = start_ns + int(settings.warmup * 1e9)
        self.end_ns = self.measure_ns + int(settings.duration * 1e9)
        self.timeout_ns = int(settings.timeout * 1e9)
        self.on_window = on_window
        self.measuring = self.ended = False
        self.cpu_at_start = self.wall_at_start = self.cpu_at_end = self.wall_at_end = 0.0
        self.settled_ns: int | None = None  # in the drain: when nothing measured was in flight

    def open(self) -> None:
        """Start the window's clocks and tell ``on_window``."""
        self.measuring = True
        self.cpu_at_start, self.wall_at_start = time.process_time(), time.monotonic()
        if self.on_window:
            self.on_window("start")

    def close(self) -> None:
        """Stop the window's clocks and tell ``on_window``, the first time only."""
        if not self.ended:
            self.ended = True
            self.wall_at_end, self.cpu_at_end = time.monotonic(), time.process_time()
            if self.on_window:
                self.on_window("end")

    def drained(self, now: int, pending: int) -> bool:
        """In the drain (it closes the window): is it over? It is a linger after no measured
        request is ``pending`` any more, or a timeout after the end at the latest."""
        self.close()
        if pending == 0 and self.settled_ns is None:
            self.settled_ns = now  # all answered: linger a moment for duplicates still on the way
        if self.settled_ns is not None and now >= self.settled_ns + LINGER_NS:
            return True
        return now >= self.end_ns + self.timeout_ns

    def wait_until(self, now: int) -> int:
        """The latest a loop may sleep to: the window's end, or in the drain the linger's."""
        return self.end_ns if now < self.end_ns else (self.settled_ns or now) + LINGER_NS

    def elapsed_s(self) -> float:
        return self.wall_at_end - self.wall_at_start if self.measuring else 0.0

    def cpu_s(self) -> float:
        """The CPU time this process used in the window (like the server's)."""
        return self.cpu_at_end - self.cpu_at_start if self.measuring else 0.0


def run_part(
    settings: Settings,
    part: int,
    start_ns: int,
    progress: Any = None,
    on_window: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Drive this process's share of the clients from ``start_ns`` (time.monotonic_ns) on.

    ``on_window("start")`` and ``on_window("end")`` are called as the measured window opens and
    closes, so a caller can sample the server over exactly that window.
    """
    _precise_timers()
    codec = wire.Codec(settings.payload_size, settings.encoding, settings.prefix)
    client_ids = settings.clients_of(part)
    n = len(client_ids)
    socks, poller = _open_sockets(settings, n)
    index_of_fd = {sock.fileno(): k for k, sock in enumerate(socks)}

    closed = settings.mode == "closed"
    window = _Window(settings, start_ns, on_window)
    timeout_ns, measure_ns, end_ns = window.timeout_ns, window.measure_ns, window.end_ns
    never = 1 << 62

    outstanding: list[dict[int, tuple[int, int, bytes]]] = [{} for _ in range(n)]
    timed_out: list[set[int]] = [set() for _ in range(n)]
    next_seq = [0] * n
    newest_reply = [b""] * n  # closed loop: the reply the one request in flight must get
    first_measured = [never] * n  # a request counts if its sequence number is at least this
    fifo: collections.deque[tuple[int, int, int]] = collections.deque()  # (sent_ns, k, seq)
    counts = dict.fromkeys(
        ("sent", "received", "lost", "late", "duplicate", "corrupt", "server_errors"), 0
    )
    counts["socket_errors"] = 0
    # Verified replies that arrived within the measured window, whenever their request was
    # sent: the throughput. (Counting only requests sent in the window would miss the replies
    # to those in flight as it opens: a whole round trip's worth when latency is long.)
    counts["in_window"] = 0
    pending = [0]  # measured requests neither answered nor lost yet
    latency, uncorrected, lag = stats.Tally(), stats.Tally(), stats.Tally()
    totals = {"latency": stats.new_histogram(), "uncorrected": stats.new_histogram()}
    total_lag = stats.new_histogram()
    second = {"sent": 0, "replies": 0, "lost": 0}
    series: list[dict[str, Any]] = []

    def send(k: int, scheduled_ns: int) -> None:
        seq = next_seq[k]
        next_seq[k] = seq + 1
        request = codec.request(client_ids[k], seq)
        if closed:
            newest_reply[k] = codec.expected_reply(request)
        sent_ns = time.monotonic_ns()
        try:
            socks[k].send(request)
        except OSError:
            counts["socket_errors"] += 1
        outstanding[k][seq] = (scheduled_ns, sent_ns, request)
        fifo.append((sent_ns, k, seq))
        if seq >= first_measured[k]:
            counts["sent"] += 1
            second["sent"] += 1
            pending[0] += 1
            if not closed:
                lag_us = (sent_ns - scheduled_ns) // 1000
                lag.counts[lag_us] = lag.counts.get(lag_us, 0) + 1

    def on_reply(k: int, reply: bytes, now: int) -> None:
        seq = codec.sequence_of(reply, client_ids[k])
        entry = outstanding[k].get(seq) if seq is not None else None
        if entry is not None and reply == codec.expected_reply(entry[2]):
            del outstanding[k][seq]
            newest_reply[k] = b""
            if measure_ns <= now < end_ns:
                counts["in_window"] += 1
            if seq >= first_measured[k]:
                counts["received"] += 1
                pending[0] -= 1
                second["replies"] += 1
                micros = (now - entry[0]) // 1000
                latency.counts[micros] = latency.counts.get(micros, 0) + 1
                if not closed:
                    micros = (now - entry[1]) // 1000
                    uncorrected.counts[micros] = uncorrected.counts.get(micros, 0) + 1
            if closed and now < end_ns:
                send(k, time.monotonic_ns())
            return
        if seq is not None and seq in timed_out[k]:
            timed_out[k].discard(seq)
            if seq >= first_measured[k]:
                counts["late"] += 1
        elif seq is not None and seq < next_seq[k] and entry is None:
            if seq >= first_measured[k]:
                counts["duplicate"] += 1
        else:
            verdict = wire.classify_unmatched(reply)
            if now >= measure_ns:
                counts[verdict.value] += 1
            if closed and verdict is wire.Verdict.SERVER_ERROR and outstanding[k]:
                # The one request in flight was refused: it will never be answered.
                expire(k, next(iter(outstanding[k])))

    def expire(k: int, seq: int) -> None:
        del outstanding[k][seq]
        newest_reply[k] = b""
        timed_out[k].add(seq)
        if seq >= first_measured[k]:
            counts["lost"] += 1
            second["lost"] += 1
            pending[0] -= 1
        if closed and time.monotonic_ns() < end_ns:
            send(k, time.monotonic_ns())

    def roll_second() -> None:
        # Percentiles wait for the end: computing them takes tens of ms in pure Python, a stall
        # that would show up in the very latencies being measured.
        corrected = latency.flush()
        totals["latency"].add(corrected)
        totals["uncorrected"].add(uncorrected.flush())
        total_lag.add(lag.flush())
        series.append({"second": len(series), **second, "histogram": stats.encode(corrected)})
        second.update(sent=0, replies=0, lost=0)

    def report() -> None:
        if progress is not None:
            base = part * len(PROGRESS_FIELDS)
            progress[base : base + 4] = [
                counts["sent"],
                counts["received"],
                counts["lost"],
                int(window.measuring),
            ]

    # Warm-up: the same load, counted nowhere: until the boundary no sequence number is measured.
    while time.monotonic_ns() < start_ns:
        time.sleep(max(0.0, (start_ns - time.monotonic_ns()) / 1e9))
    arrivals = _arrivals(settings, part, n, start_ns)
    next_scheduled = next(arrivals)
    scheduled_count = 0

    def begin_measuring() -> None:
        for k in range(n):
            first_measured[k] = next_seq[k]
        window.open()

    if settings.warmup <= 0:
        begin_measuring()
    if closed:
        for k in range(n):
            send(k, time.monotonic_ns())
    next_housekeeping = start_ns + HOUSEKEEPING_NS
    next_second = measure_ns + 1_000_000_000
    next_progress = start_ns
    epoll_fd = poller.fileno()
    recv_size = codec.reply_size + 64  # a little room to see an oversized (corrupt) reply

    latency_counts = latency.counts
    gc.collect()
    gc.disable()  # the loop makes no reference cycles; a collector pause would be a fake stall
    while True:
        now = time.monotonic_ns()
        if now >= end_ns and window.drained(now, pending[0]):
            break
        if not window.measuring and now >= measure_ns:
            begin_measuring()
        if not closed:
            while next_scheduled <= now and next_scheduled < end_ns:
                send(scheduled_count % n, int(next_scheduled))
                scheduled_count += 1
                next_scheduled = next(arrivals)
        if now >= next_housekeeping:
            next_housekeeping = now + HOUSEKEEPING_NS
            while fifo and fifo[0][0] + timeout_ns <= now:
                _, k, seq = fifo.popleft()
                if seq in outstanding[k]:
                    expire(k, seq)
            if window.measuring and now >= next_second:
                next_second += 1_000_000_000
                roll_second()
                latency_counts = latency.counts
            if now >= next_progress:
                next_progress = now + PROGRESS_NS
                report()
        horizon = min(next_housekeeping, window.wait_until(now))
        if closed:
            events = poller.poll(max(0.0, (horizon - now) / 1e9))
        else:
            wake = horizon if now >= end_ns else min(horizon, int(next_scheduled))
            if wake > now:  # select() waits to the microsecond; epoll only to the millisecond
                select.select([epoll_fd], [], [], (wake - now) / 1e9)
            events = poller.poll(0)
        for fd, _ in events:
            k = index_of_fd[fd]
            sock = socks[k]
            while True:
                try:
                    reply = sock.recv(recv_size)
                except BlockingIOError:
                    break
                except OSError:  # ICMP port unreachable: the server is gone
                    counts["socket_errors"] += 1
                    break
                now = time.monotonic_ns()
                if closed and reply == newest_reply[k]:
                    # The common case, kept inline: the reply to the one request in flight.
                    seq = next_seq[k] - 1
                    scheduled_ns = outstanding[k].pop(seq)[0]
                    newest_reply[k] = b""  # a second copy is a duplicate, not a reply
                    if seq >= first_measured[k]:
                        counts["received"] += 1
                        pending[0] -= 1
                        second["replies"] += 1
                        micros = (now - scheduled_ns) // 1000
                        latency_counts[micros] = latency_counts.get(micros, 0) + 1
                    if now < end_ns:
                        if now >= measure_ns:
                            counts["in_window"] += 1
                        send(k, time.monotonic_ns())
                    break
                on_reply(k, reply, now)
                if closed:
                    break

    gc.enable()
    if window.measuring:
        roll_second()  # the last, partial second
        if series and series[-1]["replies"] == 0 and series[-1]["sent"] == 0:
            series.pop()
    in_flight = pending[0]
    report()
    poller.close()
    for sock in socks:
        sock.close()
    return {
        "part": part,
        "clients": n,
        "elapsed_s": window.elapsed_s(),
        "cpu_s": window.cpu_s(),
        "counts": counts | {"in_flight": in_flight},
        "latency": stats.encode(totals["latency"]),
        "uncorrected": stats.encode(totals["uncorrected"]) if not closed else "",
        "lag": stats.encode(total_lag) if not closed else "",
        "series": series,
    }
