"""What every model shares: binding, handling a request, counting, events, stopping cleanly.

Each model module writes its own loop, in its own words: it receives (``recvfrom``), calls
``Server.handle`` (decode, do the work, build the reply, count it: one call, no socket), and
sends the reply (``sendto``), or hands the datagram to someone who does. A reply of None (a
sockperf message that asks none, see ``servers.protocol``) is not sent: it is counted ignored.
Everything the models share is here, once: the bound socket, the counters, the events, the
stop, the supervision.

Stopping: SIGTERM or SIGINT calls ``request_stop``, which shuts the socket down for reading. On
Linux that wakes every recvfrom blocked on it, in every thread, every forked process and every
sub-interpreter sharing it (through a dup of its fd), and each returns ``SHUT_DOWN``,
``(b"", None)``, once the queue is drained, so the datagrams already received are still
answered. A real empty datagram always comes with an address, so the two never mix up. An
event loop cannot stop that way (a non-blocking socket shut down while its reader is busy polls
readable and answers EAGAIN forever): it calls ``mark_stop`` and stops reading itself.

A blocking recvfrom on an unconnected UDP socket does not fail on Linux (ICMP errors are not
reported to it), so the blocking loops do not guard it; a sendto can fail (a vanished route, a
full buffer): every model catches that, and ``unsent`` counts it and logs it.

A sub-interpreter shares no Python objects with the main one: it imports this module afresh
(so nothing here may pull in an extension that refuses sub-interpreters: ctypes on 3.12,
greenlet, hdrhistogram) and rebuilds its ``Server`` from ``Server.handoff``, text plus fd numbers.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import mmap
import os
import platform
import select
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from servers import protocol, tracing
from servers.protocol import ErrorKind, Ignored
from servers.work import Work

# After a stop request, workers get this long to answer what they hold; then they are ended.
STOP_GRACE_S = 1.5
JOIN_POLL_S = 0.1
# A supervised worker that ends unasked is replaced, unless workers die this often: then the
# fault is not a passing one and restarting would only hide it.
RESTART_LIMIT = 5
RESTART_WINDOW_S = 10.0
# The field order of one worker's row of counters: answered, answered with an error (echo),
# ignored (sockperf: no answer, by why), failed.
KINDS = (*ErrorKind, *Ignored)
FIELDS = ("handled", *(kind.value for kind in KINDS), "failed")
_FIELD_INDEX = {None: 0, **{kind: i + 1 for i, kind in enumerate(KINDS)}}
_FAILED = len(FIELDS) - 1

Address = Any  # (host, port) for IPv4, (host, port, flowinfo, scope_id) for IPv6
Kind = ErrorKind | Ignored | None  # how a request was counted: None is answered
# The reply (None: the message gets no answer, sockperf's), its kind, its timing.
Handled = tuple[bytes | None, Kind, dict | None]
# What recvfrom returns once the socket is shut down for reading: the stop. The blocking loops
# say ``for datagram, address in iter(partial(sock.recvfrom, size), SHUT_DOWN)``.
SHUT_DOWN = (b"", None)


class StartError(Exception):
    """The server cannot start (port in use, unknown host, ...): one line, exit status 2."""


@dataclass(frozen=True)
class Config:
    model: str
    workers: int
    work: Work
    host: str = "127.0.0.1"
    port: int = 8989
    prefix: str = protocol.DEFAULT_PREFIX
    max_size: int = protocol.DEFAULT_MAX_SIZE
    trace: str | None = None  # a file to write per-request records to, at stop
    # Last: from here on, in this class body, the name is this field's, not the module's.
    protocol: str = "echo"  # or "sockperf" (servers.protocol.PROTOCOLS)


class Joinable(Protocol):
    def is_alive(self) -> bool: ...
    def join(self, timeout: float | None = None) -> None: ...


def log(message: str) -> None:
    """Human-readable messages go to stderr; stdout carries JSON events only."""
    print(message, file=sys.stderr, flush=True)


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def bind(host: str, port: int) -> socket.socket:
    """A UDP socket bound to (host, port). No SO_REUSEADDR: UDP has no TIME_WAIT to step around."""
    if host in ("", "0.0.0.0"):  # every IPv4 interface, as the original program's ("", port)
        family, address = socket.AF_INET, ("0.0.0.0", port)
    else:
        try:
            family, _, _, _, address = socket.getaddrinfo(
                host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE
            )[0]
        except socket.gaierror as error:
            raise StartError(f"cannot resolve host {host!r}: {error.strerror}") from None
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        reason = "already in use" if error.errno == errno.EADDRINUSE else error.strerror
        raise StartError(f"cannot bind UDP {host or '0.0.0.0'}:{port}: {reason}") from None
    return sock


class Counters:
    """One row of counters per worker; each worker writes only its own row, so no lock.

    ``shared=True`` puts the rows in a shared mapping of an anonymous file (``self.fd``), so the
    counts of forked workers (which inherit the mapping) and of sub-interpreters (which map the
    same fd, see ``attach``) reach the main process, and survive a worker that was killed or died.
    """

    def __init__(self, labels: Sequence[str], shared: bool = False, fd: int | None = None):
        self.labels = list(labels)
        size = len(self.labels) * len(FIELDS)
        self.fd = fd
        if shared and fd is None:
            self.fd = _anonymous_file(size * 8)
        if self.fd is None:
            self._cells: Any = [0] * size
        else:  # MAP_SHARED: every mapping of the file, in any process or interpreter, is one
            self._cells = memoryview(mmap.mmap(self.fd, size * 8)).cast("Q")

    @classmethod
    def attach(cls, labels: Sequence[str], fd: int) -> Counters:
        """The counters another interpreter of this process made with ``shared=True``."""
        return cls(labels, fd=fd)

    def record(self, worker: int, kind: Kind) -> None:
        self._cells[worker * len(FIELDS) + _FIELD_INDEX[kind]] += 1

    def record_failure(self, worker: int, count: int = 1) -> None:
        self._cells[worker * len(FIELDS) + _FAILED] += count

    def record_unsent(self, worker: int, kind: Kind) -> None:
        """A request recorded as ``kind`` whose reply could not be sent: it failed instead."""
        self._cells[worker * len(FIELDS) + _FIELD_INDEX[kind]] -= 1
        self.record_failure(worker)

    def totals(self) -> dict[str, Any]:
        width = len(FIELDS)
        rows = {
            label: dict(zip(FIELDS, self._cells[i * width : (i + 1) * width], strict=True))
            for i, label in enumerate(self.labels)
        }
        total = {field: sum(row[field] for row in rows.values()) for field in FIELDS}
        return {
            "handled": total["handled"],
            "errors": {kind.value: total[kind.value] for kind in ErrorKind},
            "ignored": {kind.value: total[kind.value] for kind in Ignored},
            "failed": total["failed"],
            "per_worker": {label: row["handled"] for label, row in rows.items()},
        }


class Server:
    """A bound socket plus the calibrated work, the counters and the stop state."""

    def __init__(self, config: Config, sock: socket.socket, work: Work):
        self.config = config
        self.sock = sock
        self.work = work
        self.workers = config.workers
        self.counters = Counters(["main"])
        self.stop_requested_at: float | None = None
        self.forced = 0
        self.restarts: dict[str, int] | None = None  # per worker, where a model supervises
        self.gave_up = False  # workers died in a loop: the server stopped itself
        self._deaths: list[float] = []  # when supervised workers ended unasked, recently
        self.died: list[str] | None = None  # who raised; stays None where a model cannot tell
        self.check_in_fd: int | None = None  # a sub-interpreter's end of CheckIns
        self.bufsize = config.max_size + 1  # for recvfrom: one byte over the limit shows oversize
        self.trace: tracing.Trace | None = None
        if config.trace:
            header = {"model": config.model, "work": work.spec, "work_exact": work.exact_spec,
                      "workers": config.workers, "clock": "CLOCK_MONOTONIC, ns"}  # fmt: skip
            self.trace = tracing.Trace(Path(config.trace), header)
            self.sock = StampingSocket(fileno=sock.detach())  # the same socket, stamping

    # -- what a worker does between its recvfrom and its sendto ---------------------------

    def handle(self, datagram: bytes, worker: int = 0) -> bytes | None:
        """One request, all but the socket: decode it, do the work, build the reply, count it.

        The wait (``io=``) sleeps the thread (a greenlet yields, under gevent). The request is
        counted (``count``) as its reply is ready; if the reply cannot be sent, ``unsent``.
        None: the message gets no answer (sockperf's warm-ups, under-load's messages between
        pongs, malformed ones): nothing to send, and it is counted as ignored, by why.
        """
        for step in self._steps(datagram):
            if step is None:
                self.work.wait()
        reply, kind, timing = step
        self.count(worker, kind, timing)
        return reply

    async def handle_async(self, datagram: bytes, worker: int = 0) -> bytes | None:
        """``handle`` in a coroutine: the wait is awaited, so the loop runs others meanwhile."""
        for step in self._steps(datagram):
            if step is None:
                await self.work.wait_async()
        reply, kind, timing = step
        self.count(worker, kind, timing)
        return reply

    def respond(self, datagram: bytes) -> Handled:
        """``handle`` without the counting, for a worker whose requests are counted where the
        reply is sent (procpool's pool: the main process counts)."""
        for step in self._steps(datagram):
            if step is None:
                self.work.wait()
        return step

    def _steps(self, datagram: bytes) -> Iterator[Handled | None]:
        """Every step of one request, in one place: it yields None where the request waits,
        then the request's reply, error kind and timing (``Handled``).

        The caller does the waiting its own way (sleep in a thread, await in a coroutine), so
        the decoding, the computation, the tracing and the reply exist once for every model,
        and the traced end of the work comes after the wait, however it was waited.
        """
        start_ns = time.monotonic_ns() if self.trace else 0
        reply, kind = self.decide(datagram)
        cpu_ns, checkpoints = 0, []
        if kind is None:  # a request to answer: the work runs (not for errors, nor ignored)
            cpu_ns, checkpoints = self.work.hold(measured=self.trace is not None)
            if self.work.io_seconds:
                yield None
        if self.trace is None or reply is None:  # what gets no answer is counted, not traced
            yield reply, kind, None
        else:
            yield reply, kind, tracing.timing(datagram, start_ns, cpu_ns, checkpoints)

    def decide(self, datagram: bytes) -> tuple[bytes | None, Kind]:
        """The reply to ``datagram`` in this server's protocol (None: no answer) and its kind;
        pure, so ``unsent`` can ask again how a request was counted."""
        if self.config.protocol == "sockperf":
            return protocol.sockperf_respond(datagram, self.config.max_size)
        return protocol.respond(datagram, self.config.prefix, self.config.max_size)

    def count(self, worker: int, kind: Kind, timing: dict | None = None) -> None:
        """Count a request whose reply is ready, in ``worker``'s row: handled, or its error.
        When tracing, record it too (``sent_ns``: now, as the reply goes to sendto)."""
        self.counters.record(worker, kind)
        if timing is not None and self.trace is not None:
            self.trace.record(self.counters.labels[worker], timing, time.monotonic_ns())

    def unsent(self, datagram: bytes, address: Address, error: OSError, worker: int = 0) -> None:
        """The reply to ``datagram`` could not be sent (a vanished route, a full buffer): count
        the request as failed instead of as answered, say so, and serve on."""
        self.counters.record_unsent(worker, self.decide(datagram)[1])  # its kind, as counted
        if self.trace is not None:
            self.trace.forget(getattr(datagram, "received_ns", None))
        log(f"{self.config.model}: reply to {address} failed: {error}")

    def flush_trace(self) -> None:
        """At the end of a worker whose trace records the main interpreter cannot see (a forked
        process, a sub-interpreter): leave them in a part file, for ``stopped`` to merge."""
        if self.trace is not None:
            self.trace.flush_part()

    # -- lifecycle ------------------------------------------------------------------------

    def count_per_worker(self, labels: Sequence[str], shared: bool = False) -> None:
        self.counters = Counters(labels, shared)

    def handoff(self, worker: int, check_in_fd: int) -> str:
        """What a sub-interpreter needs to rebuild this server as ``worker``: JSON text, since a
        str crosses into any interpreter, with the socket and the counters as fd numbers (one
        process, one fd table). The calibrated work goes along: no interpreter recalibrates."""
        config = dataclasses.asdict(dataclasses.replace(self.config, work=self.work))
        return json.dumps({"config": config, "socket": self.sock.fileno(), "worker": worker,
                           "labels": self.counters.labels, "counters": self.counters.fd,
                           "check_in": check_in_fd})  # fmt: skip

    @classmethod
    def adopt(cls, handoff: str) -> tuple[Server, int]:
        """In a sub-interpreter: the server ``handoff`` describes, and this worker's number.

        Its socket is a dup of the main one: the same kernel socket and receive queue, so the
        kernel hands each datagram to one waiting reader, and the main interpreter's shutdown
        wakes this one's recvfrom too.
        """
        state = json.loads(handoff)
        fields = state["config"]
        config = Config(**{**fields, "work": Work(**fields["work"])})
        server = cls(config, socket.socket(fileno=os.dup(state["socket"])), config.work)
        server.counters = Counters.attach(state["labels"], state["counters"])
        server.check_in_fd = state["check_in"]
        if server.trace is not None:
            server.trace.merges = False  # the main interpreter's trace merges this one's part
        return server, state["worker"]

    def check_in(self, worker: int) -> None:
        """In a sub-interpreter: tell the main one this worker is about to receive."""
        if self.check_in_fd is not None:
            CheckIns.report(self.check_in_fd, worker, up=True)

    def worker_died(self, label: str, error: BaseException) -> None:
        """A worker raised: report it (stderr now, the stopped event later); the others go on."""
        if self.died is None:
            self.died = []
        self.died.append(label)  # not a copy: two workers may die at once
        log(f"{self.config.model}: worker {label} died: {error}")

    def ready(self, **extra: Any) -> None:
        host, port = self.sock.getsockname()[:2]
        emit(
            "ready",
            model=self.config.model,
            host=host,
            port=port,
            pid=os.getpid(),
            python=platform.python_version(),
            workers=self.workers,
            work=self.work.spec,
            work_exact=self.work.exact_spec,
            cpu_iterations=self.work.cpu_iterations,
            prefix=self.config.prefix,
            protocol=self.config.protocol,
            max_size=self.config.max_size,
            **extra,
        )
        log(f"{self.config.model}: serving UDP on {host}:{port} with {self.workers} worker(s)")

    def mark_stop(self) -> None:
        """Record a stop request, for ``grace_left``; a second one skips the grace period.

        It leaves the socket alone: a model that stops reading its own way calls this alone.
        """
        if self.stop_requested_at is not None:
            self.stop_requested_at = -STOP_GRACE_S  # already past any deadline
        else:
            self.stop_requested_at = time.monotonic()

    def request_stop(self, *_: Any) -> None:
        """Signal handler: stop receiving; a second request skips the grace period."""
        first = self.stop_requested_at is None
        self.mark_stop()
        if not first:
            return
        try:
            self.sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass  # Linux answers ENOTCONN for an unconnected UDP socket, yet wakes its readers

    def grace_left(self) -> float:
        """Seconds left for workers to finish after a stop request (infinite before one)."""
        if self.stop_requested_at is None:
            return float("inf")
        return max(0.0, self.stop_requested_at + STOP_GRACE_S - time.monotonic())

    def supervise(self, workers: list[Any], restart: Callable[[int], Any]) -> None:
        """``join``, but until a stop request a worker that ends (killed, crashed) is replaced
        by ``restart(its index)`` within ``JOIN_POLL_S`` (see ``may_restart``)."""
        self.restarts = dict.fromkeys(self.counters.labels, 0)
        while self.stop_requested_at is None:
            for i, worker in enumerate(workers):
                if worker.is_alive() or self.stop_requested_at is not None:
                    continue
                workers[i] = self.replace_ended(i, worker, restart) or worker
            time.sleep(JOIN_POLL_S)
        self.join(workers)

    def replace_ended(self, i: int, worker: Any, restart: Callable[[int], Any]) -> Any:
        """Worker ``i`` ended unasked (killed, crashed): reap it and return ``restart(i)``, or
        None after a stop request or when workers die too often (see ``may_restart``)."""
        worker.join(1.0)  # it has ended: this reaps it
        why = f"exit code {getattr(worker, 'exitcode', None)}"
        if self.stop_requested_at is None and self.may_restart([self.counters.labels[i]], why):
            return restart(i)
        return None

    def queued(self, slots: Any, most: int) -> list[tuple[bytes, Address]]:
        """What the socket already holds, without waiting: non-blocking recvfroms until EAGAIN,
        at most ``most``, each taking a slot of the semaphore ``slots`` (none left: stop).
        A loop that hands datagrams on in batches calls it after its blocking recvfrom."""
        batch: list[tuple[bytes, Address]] = []
        while len(batch) < most and slots.acquire(blocking=False):
            try:
                datagram, address = self.sock.recvfrom(self.bufsize, socket.MSG_DONTWAIT)
            except OSError:  # EAGAIN: nothing more queued (after a stop too, on Linux)
                address = None
            if address is None:  # the stop: the blocking recvfrom after this one sees it
                slots.release()
                break
            batch.append((datagram, address))
        return batch

    def drain(self, slots: Any, count: int) -> bool:
        """Take back ``count`` slots of a semaphore (every request in progress done) within
        the grace period; False if some are still out then."""
        return all(slots.acquire(timeout=self.grace_left()) for _ in range(count))

    def may_restart(self, labels: Sequence[str], why: str) -> bool:
        """Workers ``labels`` ended unasked: count a restart for each and say go ahead, unless
        workers died ``RESTART_LIMIT`` times in ``RESTART_WINDOW_S``: then stop the server
        (exit status 1) instead of restarting them for ever."""
        if self.restarts is None:
            self.restarts = dict.fromkeys(self.counters.labels, 0)
        now = time.monotonic()
        self._deaths = [t for t in self._deaths if now - t < RESTART_WINDOW_S] + [now]
        who = ", ".join(labels)
        if len(self._deaths) >= RESTART_LIMIT:
            log(f"{self.config.model}: {len(self._deaths)} workers died within "
                f"{RESTART_WINDOW_S:g} s (the last, {who}, {why}); not restarting them again: "
                "stopping")  # fmt: skip
            self.gave_up = True
            self.request_stop()
            return False
        log(f"{self.config.model}: worker {who} ended ({why}); restarting")
        for label in labels:
            self.restarts[label] += 1
        return True

    def join(self, workers: Sequence[Joinable]) -> None:
        """Wait for every worker to return; after a stop request, at most the grace period.

        Workers still running then are ended: processes are killed, threads are daemons and
        end with this process a moment later.
        """
        while alive := [worker for worker in workers if worker.is_alive()]:
            if self.grace_left() == 0:
                self.forced = len(alive)
                log(f"{self.config.model}: {len(alive)} worker(s) still busy, ending them")
                for worker in alive:
                    if hasattr(worker, "kill"):
                        worker.kill()
                        worker.join(1.0)
                return
            alive[0].join(min(JOIN_POLL_S, self.grace_left()) or JOIN_POLL_S)

    def stopped(self) -> None:
        if self.trace is not None:
            self.trace.write()  # before the event: a reader of "stopped" finds the file whole
        extra = {key: value for key, value in (("died", self.died), ("restarts", self.restarts))
                 if value is not None}  # fmt: skip
        emit("stopped", model=self.config.model, forced=self.forced, **extra,
             **self.counters.totals())  # fmt: skip
        self.sock.close()


class StampingSocket(socket.socket):
    """A traced server's socket: each datagram remembers when recvfrom returned it.

    Only made with ``--trace``, so an untraced server's loops call the plain socket's methods.
    Under gevent this module is imported after the monkey-patching: ``socket.socket`` is then
    gevent's cooperative socket, and so is this.
    """

    def recvfrom(self, *args: Any) -> tuple[bytes, Address]:
        datagram, address = super().recvfrom(*args)
        return (datagram if address is None else tracing.stamp(datagram)), address


class CheckIns:
    """How workers in sub-interpreters, which share no Python object with the main one, say
    they are up: a line each down a pipe, by fd number. The thread that ran a worker that died
    reports that instead, so waiting for everyone never hangs on a worker that is gone."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()

    @staticmethod
    def report(fd: int, worker: int, up: bool) -> None:
        os.write(fd, f"{'+' if up else 'x'}{worker}\n".encode())  # one write < PIPE_BUF: whole

    def wait(self, count: int, timeout: float) -> int:
        """Wait until ``count`` workers have reported, at most ``timeout``; return how many are
        up (a worker that came up and died since counts as died: its last report wins)."""
        last: dict[int, bool] = {}
        pending, deadline = b"", time.monotonic() + timeout
        while len(last) < count and (left := deadline - time.monotonic()) > 0:
            if select.select([self.read_fd], [], [], left)[0]:
                *lines, pending = (pending + os.read(self.read_fd, 4096)).split(b"\n")
                last.update((int(line[1:]), line[:1] == b"+") for line in lines)
        return sum(last.values())


def _anonymous_file(size: int) -> int:
    """An fd on ``size`` zero bytes of memory that no other program can open."""
    if hasattr(os, "memfd_create"):  # Linux
        fd = os.memfd_create("udp-lab-counters")
    else:
        with tempfile.TemporaryFile() as file:  # already unlinked; the dup keeps it alive
            fd = os.dup(file.fileno())
    os.ftruncate(fd, size)
    return fd


def kill_processes(pids: Sequence[int]) -> None:
    """SIGKILL each of ``pids`` that is still there (workers past the grace period)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def become_worker_process() -> None:
    """First thing in a forked worker: die with the parent, and leave Ctrl-C to the parent.

    Ctrl-C sends SIGINT to the whole foreground process group; the parent alone turns it into
    an orderly stop (the shutdown reaches workers through the shared socket). PR_SET_PDEATHSIG
    makes the kernel kill this worker if the parent dies, even by SIGKILL: no orphans.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        import ctypes  # here, not at the top: ctypes refuses to load in a 3.12 sub-interpreter

        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)


def run(serve: Callable[[Server], None], config: Config) -> int:
    """Calibrate, bind, install the stop signals and hand the server to a model."""
    from servers.work import calibrate

    work = calibrate(config.work)  # once, in the parent, before any worker exists
    try:
        sock = bind(config.host, config.port)
    except StartError as error:
        log(f"error: {error}")
        return 2
    server = Server(config, sock, work)
    signal.signal(signal.SIGTERM, server.request_stop)
    signal.signal(signal.SIGINT, server.request_stop)
    serve(server)
    if server.gave_up:
        return 1  # the server stopped itself: its workers kept dying, or never came up
    return 0
