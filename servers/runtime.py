"""What every model shares: binding, the receive loop, counting, events, and stopping cleanly.

A model module only arranges *who* runs ``Server.receive_loop`` and ``Server.answer``: one loop,
N threads, N processes, a pool behind one loop, or a greenlet per datagram. Everything else is here,
once, so that the model files differ only in what they demonstrate. A coroutine model runs its own
receive loop on an event loop, and still takes the datagram (``recvfrom``), the reply
(``handle_async``) and the sending (``send``) from here.

Stopping: SIGTERM or SIGINT calls ``request_stop``, which shuts the socket down for reading. On
Linux that wakes every recvfrom blocked on it, in every thread and every forked process sharing
it, and each returns ``(b"", None)`` once the queue is drained, so the datagrams already received
are still answered. A real empty datagram always comes with an address, so the two never mix up.
An event loop cannot stop that way (a non-blocking socket shut down while its reader is busy
polls readable and answers EAGAIN forever): it calls ``mark_stop`` and stops reading itself.
"""

from __future__ import annotations

import ctypes
import errno
import json
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from servers import protocol, tracing
from servers.protocol import ErrorKind
from servers.work import Work

# After a stop request, workers get this long to answer what they hold; then they are ended.
STOP_GRACE_S = 1.5
JOIN_POLL_S = 0.1
# The field order of one worker's row of counters.
FIELDS = ("handled", *(kind.value for kind in ErrorKind), "failed")
_FIELD_INDEX = {None: 0, **{kind: i + 1 for i, kind in enumerate(ErrorKind)}}
_FAILED = len(FIELDS) - 1

Address = Any  # (host, port) for IPv4, (host, port, flowinfo, scope_id) for IPv6
Handled = tuple[bytes, ErrorKind | None, dict | None]  # the reply, its error if any, its timing


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

    ``shared=True`` puts the rows in shared memory before the fork, so forked workers' counts
    reach the parent (and survive a worker that had to be killed).
    """

    def __init__(self, labels: Sequence[str], shared: bool = False):
        self.labels = list(labels)
        size = len(self.labels) * len(FIELDS)
        self._cells: Any = multiprocessing.RawArray("Q", size) if shared else [0] * size

    def record(self, worker: int, kind: ErrorKind | None) -> None:
        self._cells[worker * len(FIELDS) + _FIELD_INDEX[kind]] += 1

    def record_failure(self, worker: int) -> None:
        self._cells[worker * len(FIELDS) + _FAILED] += 1

    def summary(self) -> dict[str, Any]:
        width = len(FIELDS)
        rows = {
            label: dict(zip(FIELDS, self._cells[i * width : (i + 1) * width], strict=True))
            for i, label in enumerate(self.labels)
        }
        total = {field: sum(row[field] for row in rows.values()) for field in FIELDS}
        return {
            "handled": total["handled"],
            "errors": {kind.value: total[kind.value] for kind in ErrorKind},
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
        self._bufsize = config.max_size + 1  # one byte more than allowed, to see oversize
        self.trace: tracing.Trace | None = None
        if config.trace:
            header = {"model": config.model, "work": work.spec, "work_exact": work.exact_spec,
                      "workers": config.workers, "clock": "CLOCK_MONOTONIC, ns"}  # fmt: skip
            self.trace = tracing.Trace(Path(config.trace), header)

    # -- what a worker does -------------------------------------------------------------

    def handle(self, datagram: bytes) -> Handled:
        """Decode, do the work, build the reply. Pure computation: no socket involved.

        The third item is the request's timing when tracing (see ``servers.tracing``).
        """
        steps = self._handling(datagram)
        try:
            while True:
                next(steps)
                self.work.wait()  # the thread sleeps (a greenlet yields, under gevent)
        except StopIteration as done:
            return done.value

    async def handle_async(self, datagram: bytes) -> Handled:
        """``handle`` in a coroutine: the wait is awaited, so the loop runs others meanwhile."""
        steps = self._handling(datagram)
        try:
            while True:
                next(steps)
                await self.work.wait_async()
        except StopIteration as done:
            return done.value

    def _handling(self, datagram: bytes) -> Generator[None, None, Handled]:
        """Every step of one request, in one place; it yields where the request waits.

        The caller does the waiting its own way (sleep in a thread, await in a coroutine), so
        the decoding, the computation, the tracing and the reply exist once for every model,
        and the traced end of the work comes after the wait, however it was waited.
        """
        start_ns = time.monotonic_ns() if self.trace else 0
        decoded = protocol.decode(datagram, self.config.max_size)
        if isinstance(decoded, protocol.Rejected):
            reply, kind, cpu_ns, checkpoints = decoded.reply, decoded.kind, 0, []
        else:
            cpu_ns, checkpoints = self.work.hold(measured=self.trace is not None)
            if self.work.io_seconds:
                yield
            reply, kind = protocol.encode_reply(decoded, self.config.prefix), None
        if self.trace is None:
            return reply, kind, None
        return reply, kind, tracing.timing(datagram, start_ns, cpu_ns, checkpoints)

    def answer(self, datagram: bytes, address: Address, worker: int = 0) -> None:
        """Handle one datagram and send the reply to its sender."""
        reply, kind, timing = self.handle(datagram)
        self.send(reply, kind, address, worker, timing)

    def send(
        self, reply: bytes, kind: ErrorKind | None, address: Address, worker: int,
        timing: dict | None = None,
    ) -> None:  # fmt: skip
        try:
            self.sock.sendto(reply, address)
        except OSError as error:  # a vanished route, a full buffer: count it, keep serving
            self.counters.record_failure(worker)
            log(f"{self.config.model}: reply to {address} failed: {error}")
        else:
            self.counters.record(worker, kind)
            if timing is not None and self.trace is not None:
                self.trace.record(self.counters.labels[worker], timing, time.monotonic_ns())

    def recvfrom(self) -> tuple[bytes, Address]:
        """One datagram and its sender, stamped when tracing; raises what recvfrom raises."""
        datagram, address = self.sock.recvfrom(self._bufsize)
        if self.trace is not None and address is not None:
            datagram = tracing.stamp(datagram)
        return datagram, address

    def receive_loop(self, dispatch: Callable[[bytes, Address], Any]) -> None:
        """recvfrom until the socket is shut down, handing each datagram to ``dispatch``."""
        recvfrom, bufsize, trace = self.sock.recvfrom, self._bufsize, self.trace
        while True:
            try:
                datagram, address = recvfrom(bufsize)
            except OSError as error:
                if self.stop_requested_at is not None:
                    break  # gevent cancels the wait when the socket is shut down
                log(f"{self.config.model}: recvfrom failed: {error}")
                continue
            if address is None:
                break  # the socket was shut down for reading: stop requested
            if trace is not None:
                datagram = tracing.stamp(datagram)
            dispatch(datagram, address)
        if trace is not None:
            trace.flush_part()  # a forked worker leaves its records for the main process

    # -- lifecycle ------------------------------------------------------------------------

    def count_per_worker(self, labels: Sequence[str], shared: bool = False) -> None:
        self.counters = Counters(labels, shared)

    def ready(self, **extra: Any) -> None:
        host, port = self.sock.getsockname()[:2]
        emit(
            "ready",
            model=self.config.model,
            host=host,
            port=port,
            pid=os.getpid(),
            workers=self.workers,
            work=self.work.spec,
            work_exact=self.work.exact_spec,
            cpu_iterations=self.work.cpu_iterations,
            prefix=self.config.prefix,
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
        emit("stopped", model=self.config.model, forced=self.forced, **self.counters.summary())
        self.sock.close()


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
    return 0
