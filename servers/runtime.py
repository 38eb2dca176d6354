"""What every model shares: binding, handling a request, counting, events, stopping cleanly.

Each model module writes its own loop, in its own words: it receives (``recvfrom``), calls
``Server.handle`` (decode, do the work, build the reply, count it: one call, no socket), and
sends the reply (``sendto``), or hands the datagram to someone who does. A reply of None (a
sockperf message that asks none, see ``servers.protocol``) is not sent: it is counted ignored.
What ``Server`` offers a model is in its docstring; supervision is ``servers.supervision``, the
hand-off to sub-interpreters ``servers.handoff``, the counters ``servers.counters``.

Stopping: SIGTERM or SIGINT calls ``request_stop``, which shuts the socket down for reading. On
Linux that wakes every recvfrom blocked on it, in every thread, every forked process and every
sub-interpreter sharing it (through a dup of its fd), and each returns ``SHUT_DOWN``,
``(b"", None)``, once the queue is drained, so the datagrams already received are still
answered. A real empty datagram always comes with an address, so the two never mix up. An
event loop cannot stop that way (a non-blocking socket shut down while its reader is busy polls
readable and answers EAGAIN forever): it calls ``stop.ask()`` and stops reading itself.
Python runs a signal's handler in the main thread only, and the kernel hands a signal sent to
the process to any thread that does not block it: one that lands on a helper thread leaves a
main thread blocked in recvfrom asleep. A model whose main thread receives while threads of its
own run starts them inside ``signals_to_main()``, which keeps SIGTERM and SIGINT off them.

A blocking recvfrom on an unconnected UDP socket does not fail on Linux (ICMP errors are not
reported to it), so the blocking loops do not guard it; a sendto can fail (a vanished route, a
full buffer): every model catches that, and ``unsent`` counts it and logs it.

A sub-interpreter shares no Python objects with the main one: it imports this module afresh
(so nothing here may pull in an extension that refuses sub-interpreters: ctypes on 3.12,
greenlet, hdrhistogram) and rebuilds its ``Server`` from a hand-off (``servers.handoff``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servers import protocol, tracing
from servers.counters import Counters, Kind
from servers.interpreter import gil_enabled
from servers.protocol import WireProtocol
from servers.stopping import Stop
from servers.work import Work

if TYPE_CHECKING:
    from servers.supervision import Supervisor

Address = Any  # (host, port) for IPv4, (host, port, flowinfo, scope_id) for IPv6
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
    switch_interval: float | None = None  # seconds a thread runs before it is asked for the GIL
    # --work-from-request: what ``@SPEC TEXT`` may ask for (None: ``@`` is plain text)
    request_limits: protocol.WorkLimits | None = None
    reuse_port: bool = False  # bind with SO_REUSEPORT: the model binds more sockets beside it
    # Last: from here on, in this class body, the name is this field's, not the module's.
    protocol: WireProtocol = "echo"  # or "sockperf"


def log(message: str) -> None:
    """Human-readable messages go to stderr; stdout carries JSON events only."""
    print(message, file=sys.stderr, flush=True)


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def decide(config: Config, datagram: bytes) -> protocol.Answer:
    """The answer to ``datagram`` in ``config``'s protocol: pure, so a server can ask again
    how a request was counted (``Server.unsent``)."""
    if config.protocol == "sockperf":
        return protocol.Answer(*protocol.sockperf_respond(datagram, config.max_size))
    return protocol.answer(datagram, config.prefix, config.max_size, config.request_limits)


def bind(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A UDP socket bound to (host, port). No SO_REUSEADDR: UDP has no TIME_WAIT to step around.

    ``reuse_port`` (the registry's trait, through ``Config``): the socket opens a SO_REUSEPORT
    group, which ``bind_beside`` adds sockets to; the option is set before the bind, as it must
    be on every socket of a group. The port must still be free: a plain socket binds it first,
    so a port held by anyone, another group of this user's included, is the usual "already in
    use" and not a silent share of another server's traffic (port 0: the free port it got).
    """
    if host in ("", "0.0.0.0"):  # every IPv4 interface, as the original program's ("", port)
        family, address = socket.AF_INET, ("0.0.0.0", port)
    else:
        try:
            family, _, _, _, address = socket.getaddrinfo(
                host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE
            )[0]
        except socket.gaierror as error:
            raise StartError(f"cannot resolve host {host!r}: {error.strerror}") from None
    where = f"{host or '0.0.0.0'}:{port}"
    if reuse_port:  # closed before the group binds: a moment when another could take the port
        with _bound(socket.socket(family, socket.SOCK_DGRAM), address, where) as probe:
            address = probe.getsockname()
    return _bound(_udp_socket(family, reuse_port), address, where)


def bind_beside(sock: socket.socket) -> socket.socket:
    """One more socket in ``sock``'s SO_REUSEPORT group (``bind(..., reuse_port=True)``): its
    family, its very address (the port that port 0 picked) and its class (a traced server's
    stamps what it receives, see ``StampingSocket``)."""
    address = sock.getsockname()
    where = f"{address[0]}:{address[1]}"
    return _bound(_udp_socket(sock.family, True, type(sock)), address, where)


def _udp_socket(family: int, reuse_port: bool, kind: type = socket.socket) -> socket.socket:
    sock = kind(family, socket.SOCK_DGRAM)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


def _bound(sock: socket.socket, address: Address, where: str) -> socket.socket:
    try:
        sock.bind(address)
    except OSError as error:
        sock.close()
        reason = "already in use" if error.errno == errno.EADDRINUSE else error.strerror
        raise StartError(f"cannot bind UDP {where}: {reason}") from None
    return sock


class Server:
    """One bound UDP socket, the calibrated work, the counters and the stop: what every model
    does with a request besides receiving it and sending the reply.

    A model's ``serve(server)`` calls, in this order:

    - ``count_per_worker(labels, shared=False)``: a row of counters per worker, before any
      starts (``shared``: workers in other processes or interpreters write theirs).
    - ``ready(**extra)``: once every worker can receive; the "ready" event.
    - In each worker's loop, between its recvfrom and its sendto: ``handle(datagram, worker)``
      (a wait sleeps), ``handle_async(datagram, worker)`` (awaited: so is a wait), or, for a
      model that counts where the reply is sent, ``respond(datagram)`` and later
      ``count(worker, kind, timing)``. A sendto that fails: ``unsent(datagram, address,
      error, worker)``. A worker whose trace the main interpreter cannot see calls
      ``flush_trace()`` as it ends.
    - ``stop.join(workers)``: after the stop, wait for every worker (the grace period at most)
      and end the rest; it returns how many had to be ended. A model that stops its own way
      waits with ``stop.grace_left()`` and counts those itself.
    - ``stopped(forced, supervisor=None)``: last; the "stopped" event with the counts.

    Stopping: ``request_stop`` (the signal handler ``run`` installs) asks ``stop``
    (``servers.stopping``) and shuts the socket down for reading; a loop that stops reading
    itself calls ``stop.ask()``; ``stop.requested`` says whether one was asked for. A model may
    install signal handlers of its own.

    Attributes a model reads and never assigns: ``config``, ``sock``, ``work``, ``stop``,
    ``workers`` (how many: ``config.workers``), ``bufsize`` (for recvfrom: one byte over the size
    limit, so an oversized datagram shows), ``counters``. Nothing here is meant to be
    overridden.
    """

    def __init__(
        self, config: Config, sock: socket.socket, work: Work, counters: Counters | None = None
    ) -> None:
        # counters: rows another interpreter made (a sub-interpreter's Server: its trace
        # records then go to a part file for the main interpreter to merge)
        self.config, self.sock, self.work = config, sock, work
        self.workers = config.workers
        self.counters = counters or Counters(["main"])
        self.bufsize = config.max_size + 1
        self.gave_up = False  # its supervisor gave up: the server stopped itself, exit status 1
        self.stop = Stop()
        if config.switch_interval:  # here: an interpreter with a GIL of its own has its own
            sys.setswitchinterval(config.switch_interval)
        self.trace: tracing.Trace | None = None
        if config.trace:
            header = {"model": config.model, "work": work.spec, "work_exact": work.exact_spec,
                      "workers": config.workers, "clock": "CLOCK_MONOTONIC, ns"}  # fmt: skip
            self.trace = tracing.Trace(Path(config.trace), header, merges=counters is None)
            self.sock = StampingSocket(fileno=sock.detach())  # the same socket, stamping

    # -- what a worker does between its recvfrom and its sendto ---------------------------

    def handle(
        self, datagram: bytes, worker: int = 0, wait: Callable[[float], None] | None = None
    ) -> bytes | None:
        """One request, all but the socket: decode it, do the work, build the reply and count
        it (``unsent`` if it cannot be sent). The wait sleeps the thread (under gevent, the
        greenlet), or calls ``wait(seconds)``, a hub's own. None: no answer (sockperf's
        warm-ups and messages between pongs, malformed ones), counted as ignored, by why."""
        reply, kind, timing = self.respond(datagram, wait)
        self.count(worker, kind, timing)
        return reply

    def respond(self, datagram: bytes, wait: Callable[[float], None] | None = None) -> Handled:
        """``handle`` without the counting, for a worker whose requests are counted where the
        reply is sent (procpool's: the main process counts)."""
        for step in self._steps(datagram):
            if isinstance(step, Work):
                wait(step.io_seconds) if wait else step.wait()
        return step

    async def handle_async(self, datagram: bytes, worker: int = 0) -> bytes | None:
        """``handle`` in a coroutine: the wait is awaited, so the loop runs others meanwhile."""
        for step in self._steps(datagram):
            if isinstance(step, Work):
                await step.wait_async()
        reply, kind, timing = step
        self.count(worker, kind, timing)
        return reply

    def _steps(self, datagram: bytes) -> Iterator[Handled | Work]:
        """Every step of one request, uncounted: its ``Work`` where it waits (the caller waits
        its own way), then its reply, kind and timing (``Handled``): so the decoding, the work,
        the tracing and the reply exist once, and the traced end comes after the wait."""
        start_ns = time.monotonic_ns() if self.trace else 0
        answer = decide(self.config, datagram)
        cpu_ns, checkpoints = 0, []
        if answer.kind is None:  # a request to answer: the work runs (not for errors, nor ignored)
            work = answer.work or self.work  # its own (--work-from-request), or the server's
            cpu_ns, checkpoints = work.hold(measured=self.trace is not None)
            if work.io_seconds:
                yield work
        if self.trace is None or answer.reply is None:  # no answer: counted, not traced
            yield answer.reply, answer.kind, None
        else:
            yield answer.reply, answer.kind, tracing.timing(datagram, start_ns, cpu_ns, checkpoints)

    def count(self, worker: int, kind: Kind, timing: dict | None = None) -> None:
        """Count a request whose reply is ready, in ``worker``'s row: handled, or its error.
        When tracing, record it too (``sent_ns``: now, as the reply goes to sendto)."""
        self.counters.record(worker, kind)
        if timing is not None and self.trace is not None:
            self.trace.record(self.counters.labels[worker], timing, time.monotonic_ns())

    def unsent(self, datagram: bytes, address: Address, error: OSError, worker: int = 0) -> None:
        """The reply to ``datagram`` could not be sent (a vanished route, a full buffer): count
        the request as failed instead of as answered, say so, and serve on."""
        kind = decide(self.config, datagram).kind  # how it was counted
        self.counters.record_unsent(worker, kind)
        if self.trace is not None:
            self.trace.forget(getattr(datagram, "received_ns", None))
        log(f"{self.config.model}: reply to {address} failed: {error}")

    def flush_trace(self) -> None:
        """A worker the main interpreter cannot see ends (a forked process, a sub-interpreter):
        its trace records go to a part file, for ``stopped`` to merge."""
        if self.trace is not None:
            self.trace.flush_part()

    # -- lifecycle ------------------------------------------------------------------------

    def count_per_worker(self, labels: Sequence[str], shared: bool = False) -> None:
        self.counters = Counters(labels, shared)

    def ready(self, **extra: Any) -> None:
        host, port = self.sock.getsockname()[:2]
        config, work, limits = self.config, self.work, self.config.request_limits
        emit("ready", model=config.model, host=host, port=port, pid=os.getpid(),
             python=platform.python_version(), gil_enabled=gil_enabled(),
             switch_interval=sys.getswitchinterval(),
             workers=self.workers, work=work.spec,
             work_exact=work.exact_spec, cpu_iterations=work.cpu_iterations,
             prefix=config.prefix, protocol=config.protocol, max_size=config.max_size,
             request_limits=limits and asdict(limits), **extra)  # fmt: skip
        log(f"{config.model}: serving UDP on {host}:{port} with {self.workers} worker(s)")

    def request_stop(self, *_: Any) -> None:
        """Signal handler: stop receiving; a second request skips the grace period."""
        first = not self.stop.requested
        self.stop.ask()
        if first:
            try:
                self.sock.shutdown(socket.SHUT_RD)
            except OSError:  # Linux answers ENOTCONN for an unconnected UDP socket ...
                pass  # ... yet wakes its readers

    def stopped(self, forced: int = 0, supervisor: Supervisor | None = None) -> None:
        """Last: the "stopped" event, with the counts, the workers that had to be ended and
        the supervisor's restarts; a supervisor that gave up makes the exit status 1."""
        if self.trace is not None:
            self.trace.write()  # before the event: a reader of "stopped" finds the file whole
        if forced:
            log(f"{self.config.model}: {forced} worker(s) still busy after the grace period, ended")
        extra = supervisor.fields() if supervisor else {}
        self.gave_up = bool(supervisor and supervisor.gave_up)
        emit("stopped", model=self.config.model, forced=forced, gil_enabled=gil_enabled(),
             **extra, **self.counters.totals())  # fmt: skip
        self.sock.close()


class StampingSocket(socket.socket):
    """A traced server's socket: each datagram remembers when recvfrom returned it.

    Only made with ``--trace``, so an untraced server's loops call the plain socket's methods.
    Under gevent this module is imported after the monkey-patching: ``socket.socket`` is then
    gevent's cooperative socket, and so is this.
    """

    def recvfrom(self, *args: Any) -> tuple[bytes, Address]:
        datagram, address = super().recvfrom(*args)
        return (datagram if address is None else tracing.stamp(datagram, address)), address


STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


@contextlib.contextmanager
def signals_to_main() -> Iterator[None]:
    """Threads started inside never take SIGTERM or SIGINT (a thread starts with the signal
    mask of the one that starts it), so the kernel hands them to the main thread, whose
    recvfrom they interrupt. One that arrives meanwhile waits, and is handled on the way out."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def become_worker_process() -> None:
    """First thing in a forked worker: die with the parent, and leave Ctrl-C to the parent.

    Ctrl-C sends SIGINT to the whole foreground process group; the parent alone turns it into
    an orderly stop (the shutdown reaches workers through the shared socket). PR_SET_PDEATHSIG
    makes the kernel kill this worker if the parent dies, even by SIGKILL: no orphans.
    """
    import multiprocessing  # here: only workers need it

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # forked by a thread started in signals_to_main(), it would block them as that thread did
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    # The pid the parent had when it started this worker: asking getppid() here would already
    # name init if the parent was killed before this worker first ran.
    creator = multiprocessing.parent_process()
    parent = creator.pid if creator is not None else os.getppid()
    if sys.platform.startswith("linux"):
        import ctypes  # here, not at the top: ctypes refuses to load in a 3.12 sub-interpreter

        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)


def run(serve: Callable[[Server], None], config: Config) -> int:
    """Calibrate, bind, install the stop signals and hand the server to a model."""
    from servers.work import ROUGH_BUDGET_S, calibrate, iterations_per_second

    limits, rate = config.request_limits, None  # measured once, before any worker exists
    if not config.work.calibrated:  # the server's own cpu=<time>: at the best speed
        rate = iterations_per_second()
    elif limits:  # only requests' own work to judge against a cap: a fair speed will do
        rate = iterations_per_second(ROUGH_BUDGET_S)
    if limits:  # a request's own cpu= is calibrated and capped at this speed
        config = replace(config, request_limits=replace(limits, iterations_per_s=rate))
    work = calibrate(config.work, rate)
    try:
        sock = bind(config.host, config.port, config.reuse_port)
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
