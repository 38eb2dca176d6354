"""The drivers: closed and open loop over many UDP sockets, one engine per generator process.

Closed loop: each virtual client (its own socket, so its own source port) keeps one request in
flight; a reply or a timeout makes it send the next. Throughput then follows the server's speed.

Open loop: requests are *scheduled* at the target rate (uniform or Poisson arrivals) and spread
over the clients' sockets round-robin, and each is sent at its scheduled time whatever the
replies do. Latency is measured from the scheduled time, so if this process stalls, every
request it should have sent meanwhile carries the stall in its latency (coordinated omission
corrected, as wrk2 does); the latency from the actual send is kept beside it, and so is the
lag between schedule and send, which says whether the generator kept up.

The warm-up lasts ``warmup`` seconds, or, with ``warmup_max`` above it, until the reply rate has
settled: two slices of ``SETTLE_SLICE_NS`` in a row that agree within ``SETTLE_SHARE`` (a level
switch, a server's first requests or a queue still filling are a transient, not the model's rate),
or ``warmup_max`` at most. The measured window lasts ``duration``, or with ``min_replies`` until it
holds that many replies, ``duration_max`` at most: a short window that holds a few dozen replies
measures the edges of the window as much as the server.

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
import itertools
import random
import select
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, get_args

from loadgen.generator import stats, wire
from loadgen.generator.mix import Deal, Mix
from servers.protocol import DEFAULT_PREFIX, Codec, WireProtocol

HOUSEKEEPING_NS = 10_000_000  # timeouts and the per-second series are looked at this often
PROGRESS_NS = 250_000_000
LINGER_NS = 15_000_000  # after the last reply, how long stray duplicates are still counted
PROGRESS_FIELDS = ("sent", "received", "lost", "measuring")
NEVER = 1 << 62
SETTLE_SLICE_NS = 25_000_000
SETTLE_SHARE = 0.15  # two slices' reply counts within 15% (+2 replies for rounding): settled
SETTLE_SLACK = 2
# "in_window": verified replies that arrived within the measured window, whenever their
# request was sent: the throughput. (Counting only requests sent in the window would miss the
# replies to those in flight as it opens: a whole round trip's worth when latency is long.)
COUNTS = ("sent", "received", "lost", "late", "duplicate", "corrupt", "server_errors")
COUNTS += ("socket_errors", "in_window")


Mode = Literal["closed", "open"]  # each client waits for its reply, or requests come at a rate
Arrival = Literal["uniform", "poisson"]  # open loop: evenly spaced, or at random (memoryless)
MODES: tuple[Mode, ...] = get_args(Mode)
ARRIVALS: tuple[Arrival, ...] = get_args(Arrival)


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    mode: Mode = "closed"
    concurrency: int = 32
    rate: float = 0.0  # open loop: requests per second, all generator processes together
    arrival: Arrival = "uniform"
    duration: float = 10.0
    warmup: float = 1.0  # seconds; with warmup_max above it, the least warm-up
    warmup_max: float = 0.0  # above warmup: the warm-up ends once the reply rate settled
    timeout: float = 1.0
    min_replies: int = 0  # the window goes on until it holds this many replies...
    duration_max: float = 0.0  # ... up to this long (0: duration, no extension)
    payload_size: int = 64
    encoding: Codec = "utf-8"
    prefix: str = DEFAULT_PREFIX
    procs: int = 1
    seed: int = 1
    protocol: WireProtocol = "echo"  # or "sockperf": its messages, for its server or ours
    mix: Mix | None = None  # classes of requests, each asking its work (generator.mix)
    deal: Deal = "request"  # the mix's class: per request, or one per client (and its figures)

    def clients_of(self, part: int) -> list[int]:
        """The client ids that generator process ``part`` drives."""
        return list(range(part, self.concurrency, self.procs))


def _family(host: str) -> int:
    return socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)[0][0]


def _precise_timers() -> None:
    """Ask Linux for 1 us of timer slack instead of 50: open-loop sends wake closer to schedule.

    With the default slack, select() oversleeps a short timeout by a good part of it
    (docs/measurements.md, "Figures behind choices in the code").
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
        self.duration_ns = int(settings.duration * 1e9)
        self.measure_ns = start_ns + int(settings.warmup * 1e9)
        self.end_ns = self.measure_ns + self.duration_ns
        self.timeout_ns = int(settings.timeout * 1e9)
        # Settling: the warm-up's least and latest end, and the reply counts of its slices.
        self.least_ns = self.measure_ns
        self.settle_until_ns = start_ns + int(max(settings.warmup, settings.warmup_max) * 1e9)
        self.settling = self.settle_until_ns > self.least_ns
        if self.settling:
            self.measure_ns = self.end_ns = NEVER  # until settle() opens it
        self.slices: list[float] = []  # replies per slice (scaled to SETTLE_SLICE_NS)
        self.warm_seen, self.slice_start_ns = 0, start_ns
        self.min_replies = settings.min_replies
        self.longest_ns = int(max(settings.duration, settings.duration_max) * 1e9)
        self.on_window = on_window
        self.measuring = self.ended = False
        self.cpu_at_start = self.wall_at_start = self.cpu_at_end = self.wall_at_end = 0.0
        self.settled_ns: int | None = None  # in the drain: when nothing measured was in flight

    def settle(self, now: int, warm_replies: int) -> None:
        """In the warm-up (every housekeeping): close a slice when due; once the least warm-up
        is over, open the window at the first two slices that agree, or at the latest end."""
        if not self.settling or now < self.slice_start_ns + SETTLE_SLICE_NS:
            return
        # Housekeeping comes every 10 ms or so, so a slice lasts 25 to 35 ms: scaled to 25.
        scale = SETTLE_SLICE_NS / (now - self.slice_start_ns)
        self.slices.append((warm_replies - self.warm_seen) * scale)
        self.warm_seen, self.slice_start_ns = warm_replies, now
        agree = False
        if len(self.slices) >= 2:
            a, b = self.slices[-2:]
            agree = a + b > 0 and abs(a - b) <= SETTLE_SHARE * max(a, b) + SETTLE_SLACK
        if now >= self.least_ns and (agree or now >= self.settle_until_ns):
            self.settling = False
            self.measure_ns, self.end_ns = now, now + self.duration_ns

    def extend(self, now: int, in_window: int) -> None:
        """Near the window's end (every housekeeping): keep the end a few housekeeping
        intervals ahead while the window holds fewer replies than asked, up to the longest
        allowed. Moved before it is reached, so no client stops sending in between."""
        if now < self.end_ns <= now + 2 * HOUSEKEEPING_NS and in_window < self.min_replies:
            self.end_ns = min(now + 3 * HOUSEKEEPING_NS, self.measure_ns + self.longest_ns)

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

    def warmup_s(self) -> float:
        """How long the warm-up lasted (settling decides it), until the window opened."""
        return (self.measure_ns - self.start_ns) / 1e9 if self.measuring else 0.0

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

    The pieces: a _Window (the phases in time and the window's clocks), _Clients (the sockets,
    the requests in flight, the booking of each send, reply and timeout) with its _Record (what
    is counted), and the hot loop, _closed_loop or _open_loop.
    """
    _precise_timers()
    window = _Window(settings, start_ns, on_window)
    clients = _Clients(settings, part, window, progress)
    try:
        # Warm-up: the same load, counted nowhere: until the boundary no sequence is measured.
        while time.monotonic_ns() < start_ns:
            time.sleep(max(0.0, (start_ns - time.monotonic_ns()) / 1e9))
        if settings.warmup <= 0:
            clients.begin_measuring()
        if clients.closed:
            for k in range(clients.n):
                clients.send(k, time.monotonic_ns())
        gc.collect()
        gc.disable()  # the loop makes no reference cycles; a collector pause would be a fake stall
        if clients.closed:
            _closed_loop(clients)
        else:
            _open_loop(clients, _arrivals(settings, part, clients.n, start_ns))
    finally:  # an in-process caller (run_here) keeps running: leave it as it was
        gc.enable()
        clients.close()
    if window.measuring:
        clients.record.close_series()
    clients.publish_progress()
    return clients.result()


def _closed_loop(clients: _Clients) -> None:
    """Until the drain is over: a reply or a timeout sends the client's next request.

    The hot path, in one function: the reply to a client's one request in flight is matched,
    recorded and followed by the next request inline; any other datagram goes to on_reply.
    """
    window, record = clients.window, clients.record
    socks, index_of_fd, poll = clients.socks, clients.index_of_fd, clients.poller.poll
    outstanding, newest_reply = clients.outstanding, clients.newest_reply
    next_seq, first_measured = clients.next_seq, clients.first_measured
    counts, second, latency = record.counts, record.second, record.latency.counts
    by_class = record.by_class
    send, on_reply, recv_size = clients.send, clients.on_reply, clients.recv_size
    next_housekeeping = window.start_ns + HOUSEKEEPING_NS
    while True:
        now = time.monotonic_ns()
        if not clients.advance_to(now):
            break
        if now >= next_housekeeping:
            next_housekeeping = now + HOUSEKEEPING_NS
            clients.housekeeping(now)
            latency = record.latency.counts  # a new dict each second
        measure_ns, end_ns = window.measure_ns, window.end_ns  # settling and extending move them
        horizon = min(next_housekeeping, window.wait_until(now))
        for fd, _ in poll(max(0.0, (horizon - now) / 1e9)):
            k = index_of_fd[fd]
            try:
                reply = socks[k].recv(recv_size)
            except BlockingIOError:
                continue
            except OSError:  # ICMP port unreachable: the server is gone
                counts["socket_errors"] += 1
                continue
            now = time.monotonic_ns()
            if reply != newest_reply[k]:
                on_reply(k, reply, now)
                continue
            # The common case, kept inline: the reply to the one request in flight.
            seq = next_seq[k] - 1
            entry = outstanding[k].pop(seq)
            newest_reply[k] = None  # a second copy is a duplicate, not a reply
            if seq >= first_measured[k]:
                counts["received"] += 1
                record.pending -= 1
                second["replies"] += 1
                micros = (now - entry[0]) // 1000
                latency[micros] = latency.get(micros, 0) + 1
                if by_class:
                    by_class[entry[3]].received(micros)
                    if record.by_client:
                        record.by_client[k].received(micros)
            else:
                clients.warm_replies += 1
            if now < end_ns:
                if now >= measure_ns:
                    counts["in_window"] += 1
                send(k, time.monotonic_ns())


def _open_loop(clients: _Clients, arrivals: Iterator[float]) -> None:
    """Until the drain is over: send each request at its scheduled time, round-robin over the
    clients, whatever the replies do; judge every datagram that comes back (on_reply)."""
    window, record, n = clients.window, clients.record, clients.n
    socks, index_of_fd, poller = clients.socks, clients.index_of_fd, clients.poller
    counts, send, on_reply = record.counts, clients.send, clients.on_reply
    recv_size, epoll_fd = clients.recv_size, poller.fileno()
    next_housekeeping = window.start_ns + HOUSEKEEPING_NS
    next_scheduled, scheduled_count = next(arrivals), 0
    while True:
        now = time.monotonic_ns()
        if not clients.advance_to(now):
            break
        end_ns = window.end_ns  # settling and extending move it
        while next_scheduled <= now and next_scheduled < end_ns:
            send(scheduled_count % n, int(next_scheduled))
            scheduled_count += 1
            next_scheduled = next(arrivals)
        if now >= next_housekeeping:
            next_housekeeping = now + HOUSEKEEPING_NS
            clients.housekeeping(now)
        wake = min(next_housekeeping, window.wait_until(now))
        if now < end_ns:
            wake = min(wake, int(next_scheduled))
        if wake > now:  # select() waits to the microsecond; epoll only to the millisecond
            select.select([epoll_fd], [], [], (wake - now) / 1e9)
        for fd, _ in poller.poll(0):
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
                on_reply(k, reply, time.monotonic_ns())


class _Clients:
    """This process's virtual clients: their sockets, the requests each has in flight, and the
    booking of every send, reply and timeout into the record."""

    def __init__(self, settings: Settings, part: int, window: _Window, progress: Any):
        self.part, self.window, self.progress = part, window, progress
        self.closed = settings.mode == "closed"
        self.codec = wire.make_codec(
            settings.protocol, settings.payload_size, settings.encoding, settings.prefix
        )
        self.recv_size = self.codec.reply_size + 64  # room to see an oversized (corrupt) reply
        self.client_ids = settings.clients_of(part)
        n = self.n = len(self.client_ids)
        self.socks, self.poller = _open_sockets(settings, n)
        self.index_of_fd = {sock.fileno(): k for k, sock in enumerate(self.socks)}
        mix = settings.mix  # a class per request (its mark asks its work), from a deck
        self.marks = [c.mark for c in mix.classes] if mix else [b""]
        self.client_kind: list[int] = []  # dealt by client: each client's class
        if mix is not None and settings.deal == "client":  # and each client's own figures
            dealt = mix.clients(settings.seed, settings.concurrency)
            self.client_kind = [dealt[client] for client in self.client_ids]
            self.ports = [sock.getsockname()[1] for sock in self.socks]  # who the server saw
            self.kind_of = self.client_kind.__getitem__  # k -> its class
        else:
            deal = itertools.cycle(mix.deck(settings.seed + part) if mix else [0]).__next__
            self.kind_of = lambda _k: deal()
        # seq -> (scheduled_ns, sent_ns, the text its reply echoes, its class in the mix)
        self.outstanding: list[dict[int, tuple[int, int, bytes, int]]] = [{} for _ in range(n)]
        self.timed_out: list[set[int]] = [set() for _ in range(n)]
        self.next_seq = [0] * n
        # Closed loop: the reply the one request in flight must get; None when none is in flight
        # (None, not b"": an empty datagram must never pass for the expected reply).
        self.newest_reply: list[bytes | None] = [None] * n
        self.first_measured = [NEVER] * n  # a request counts if its sequence number is this or more
        # Every request sent, oldest first, (sent_ns, k, seq): what may have timed out.
        self.fifo: collections.deque[tuple[int, int, int]] = collections.deque()
        self.record = _Record(len(mix.classes) if mix else 0, len(self.client_kind))
        self.next_second = NEVER  # from the window's opening on, one a second
        self.warm_replies = 0  # replies in the warm-up: what settling looks at
        self.next_progress = window.start_ns

    def advance_to(self, now: int) -> bool:
        """Open the measured window when ``now`` reaches it; past its end, close it and drain.
        False once the drain is over."""
        window = self.window
        if now >= window.end_ns and window.drained(now, self.record.pending):
            return False
        if not window.measuring and now >= window.measure_ns:
            self.begin_measuring()
        return True

    def begin_measuring(self) -> None:
        """From now on every client's requests count."""
        for k in range(self.n):
            self.first_measured[k] = self.next_seq[k]
        self.next_second = time.monotonic_ns() + 1_000_000_000
        self.window.open()

    def send(self, k: int, scheduled_ns: int) -> None:
        """Send client ``k``'s next request, scheduled for ``scheduled_ns``, and book it."""
        seq = self.next_seq[k]
        self.next_seq[k] = seq + 1
        body = self.codec.request(self.client_ids[k], seq)  # what the reply must echo
        kind = self.kind_of(k)  # its class in the mix
        if self.closed:
            self.newest_reply[k] = self.codec.expected_reply(body)
        sent_ns = time.monotonic_ns()
        record = self.record
        try:
            self.socks[k].send(self.marks[kind] + body)
        except OSError:
            record.counts["socket_errors"] += 1
        self.outstanding[k][seq] = (scheduled_ns, sent_ns, body, kind)
        self.fifo.append((sent_ns, k, seq))
        if seq >= self.first_measured[k]:
            if record.by_class:
                record.by_class[kind].sent += 1
                if record.by_client:
                    record.by_client[k].sent += 1
            record.counts["sent"] += 1
            record.second["sent"] += 1
            record.pending += 1
            if not self.closed:
                lag_us = (sent_ns - scheduled_ns) // 1000
                lag = record.lag.counts
                lag[lag_us] = lag.get(lag_us, 0) + 1

    def on_reply(self, k: int, reply: bytes, now: int) -> None:
        """Judge and book a datagram that came to client ``k`` at ``now``."""
        seq = self.codec.sequence_of(reply, self.client_ids[k])
        entry = self.outstanding[k].get(seq) if seq is not None else None
        if entry is None or reply != self.codec.expected_reply(entry[2]):
            self.on_stray(k, seq, entry is not None, reply, now)
            return
        del self.outstanding[k][seq]
        self.newest_reply[k] = None
        window, record = self.window, self.record
        if window.measure_ns <= now < window.end_ns:
            record.counts["in_window"] += 1
        if seq < self.first_measured[k]:
            self.warm_replies += 1
        else:
            record.counts["received"] += 1
            record.pending -= 1
            record.second["replies"] += 1
            micros = (now - entry[0]) // 1000
            latency = record.latency.counts
            latency[micros] = latency.get(micros, 0) + 1
            if record.by_class:
                record.by_class[entry[3]].received(micros)
                if record.by_client:
                    record.by_client[k].received(micros)
            if not self.closed:
                micros = (now - entry[1]) // 1000
                uncorrected = record.uncorrected.counts
                uncorrected[micros] = uncorrected.get(micros, 0) + 1
        if self.closed and now < window.end_ns:
            self.send(k, time.monotonic_ns())

    def on_stray(self, k: int, seq: int | None, in_flight: bool, reply: bytes, now: int) -> None:
        """Book a datagram that answers no request in flight: a late reply, a duplicate, a
        corrupt one (``in_flight``: its request is, but the datagram is not its reply) or the
        server's error."""
        counts = self.record.counts
        if seq is not None and seq in self.timed_out[k]:
            self.timed_out[k].discard(seq)
            if seq >= self.first_measured[k]:
                counts["late"] += 1
        elif seq is not None and seq < self.next_seq[k] and not in_flight:
            if seq >= self.first_measured[k]:
                counts["duplicate"] += 1
        else:
            verdict = wire.classify_unmatched(reply)
            if now >= self.window.measure_ns:
                counts[verdict.value] += 1
            if self.closed and verdict is wire.Verdict.SERVER_ERROR and self.outstanding[k]:
                # The one request in flight was refused: it will never be answered.
                self.expire(k, next(iter(self.outstanding[k])))

    def expire(self, k: int, seq: int) -> None:
        """Book client ``k``'s request ``seq`` as lost (a reply may still come: late)."""
        kind = self.outstanding[k].pop(seq)[3]
        self.newest_reply[k] = None
        self.timed_out[k].add(seq)
        if seq >= self.first_measured[k]:
            record = self.record
            if record.by_class:
                record.by_class[kind].lost += 1
                if record.by_client:
                    record.by_client[k].lost += 1
            record.counts["lost"] += 1
            record.second["lost"] += 1
            record.pending -= 1
        if self.closed and time.monotonic_ns() < self.window.end_ns:
            self.send(k, time.monotonic_ns())

    def housekeeping(self, now: int) -> None:
        """Expire what timed out; close a second of the series and report progress when due."""
        fifo, outstanding, timeout_ns = self.fifo, self.outstanding, self.window.timeout_ns
        while fifo and fifo[0][0] + timeout_ns <= now:
            _, k, seq = fifo.popleft()
            if seq in outstanding[k]:
                self.expire(k, seq)
        if not self.window.measuring:
            self.window.settle(now, self.warm_replies)
        else:
            self.window.extend(now, self.record.counts["in_window"])
        if self.window.measuring and now >= self.next_second:
            self.next_second += 1_000_000_000
            self.record.roll_second()
        if now >= self.next_progress:
            self.next_progress = now + PROGRESS_NS
            self.publish_progress()

    def publish_progress(self) -> None:
        """Put the running totals in this part's row of the shared progress array."""
        if self.progress is not None:
            base = self.part * len(PROGRESS_FIELDS)
            counts = self.record.counts
            self.progress[base : base + 4] = [
                counts["sent"],
                counts["received"],
                counts["lost"],
                int(self.window.measuring),
            ]

    def in_flight(self) -> int:
        """Measured requests neither answered nor expired."""
        first = self.first_measured
        return sum(seq >= first[k] for k, flying in enumerate(self.outstanding) for seq in flying)

    def close(self) -> None:
        self.poller.close()
        for sock in self.socks:
            sock.close()

    def result(self) -> dict[str, Any]:
        """This part's result, for runner.merge."""
        window, record = self.window, self.record
        return {
            "part": self.part,
            "clients": self.n,
            "elapsed_s": window.elapsed_s(),
            "warmup_s": window.warmup_s(),
            "cpu_s": window.cpu_s(),
            # in_flight counted afresh from what is still outstanding, not from the running
            # tally, so that sent == received + lost + in_flight checks the bookkeeping
            "counts": record.counts | {"in_flight": self.in_flight()},
            "latency": stats.encode(record.totals["latency"]),
            "uncorrected": stats.encode(record.totals["uncorrected"]) if not self.closed else "",
            "lag": stats.encode(record.totals["lag"]) if not self.closed else "",
            "series": record.series,
            "classes": [tally.result() for tally in record.by_class],
            "per_client": [
                {
                    "client": client,
                    "port": self.ports[k],
                    "kind": self.client_kind[k],
                    **record.by_client[k].result(),
                }
                for k, client in enumerate(self.client_ids)
                if self.client_kind
            ],  # fmt: skip
        }


class _ClassTally:
    """One class of a mix: its requests sent, answered and lost, and its latencies (from the
    scheduled time, as the run's own), kept whole until the end."""

    def __init__(self) -> None:
        self.sent = self.lost = 0
        self.latency = stats.Tally()

    def received(self, micros: int) -> None:
        counts = self.latency.counts
        counts[micros] = counts.get(micros, 0) + 1

    def result(self) -> dict[str, Any]:
        histogram = self.latency.flush()
        received = histogram.get_total_count()
        return {"sent": self.sent, "received": received, "lost": self.lost,
                "latency": stats.encode(histogram)}  # fmt: skip


class _Record:
    """What is counted: requests by outcome, latencies and send lags, the per-second series,
    and with a mix, each class's own (``by_class``: empty without one) and, dealt by client,
    each client's (``by_client``)."""

    def __init__(self, classes: int = 0, clients: int = 0) -> None:
        self.by_class = [_ClassTally() for _ in range(classes)]
        self.by_client = [_ClassTally() for _ in range(clients)]  # a mix dealt by client
        self.counts = dict.fromkeys(COUNTS, 0)
        self.pending = 0  # measured requests neither answered nor lost yet
        self.second = {"sent": 0, "replies": 0, "lost": 0}
        self.latency, self.uncorrected, self.lag = stats.Tally(), stats.Tally(), stats.Tally()
        self.totals = {name: stats.new_histogram() for name in ("latency", "uncorrected", "lag")}
        self.series: list[dict[str, Any]] = []

    def roll_second(self) -> None:
        """Close a second of the series; fold its tallies into the totals."""
        # Percentiles wait for the end: computing them takes tens of ms in pure Python, a stall
        # that would show up in the very latencies being measured.
        corrected = self.latency.flush()
        self.totals["latency"].add(corrected)
        self.totals["uncorrected"].add(self.uncorrected.flush())
        self.totals["lag"].add(self.lag.flush())
        second = self.second
        self.series.append(
            {"second": len(self.series), **second, "histogram": stats.encode(corrected)}
        )
        second.update(sent=0, replies=0, lost=0)

    def close_series(self) -> None:
        """Close the last, partial second; drop it if nothing was sent or answered in it."""
        self.roll_second()
        if self.series and self.series[-1]["replies"] == 0 and self.series[-1]["sent"] == 0:
            self.series.pop()
