"""reuseport: N forked processes, each blocking in recvfrom on a socket of its own, all bound
to one port with SO_REUSEPORT; the kernel, not the workers, chooses who gets each datagram.

It picks the socket by a hash of the datagram's addresses and ports (the sender's and ours), so
one client always lands on the same worker, idle or busy: a slow request there delays only the
clients hashed to it, while another worker may sit idle. Many clients spread about evenly; one
keeps one worker busy and the rest idle (``python -m loadgen spread`` measures it). nginx
(``listen ... reuseport``) and gunicorn (``--reuse-port``) spread UDP this way; the other road
is ``processes``: one shared socket, and whichever worker is idle takes the next datagram.

Binding: every socket of a SO_REUSEPORT group needs the option before its bind, the first too:
the registry's ``reuse_port`` has ``runtime.bind`` set it on ``server.sock`` (worker 0's) once
the port is known free (a port held by anyone, even another reuseport server of this user's,
which would otherwise join the group silently, is the usual "already in use"); ``bind_beside``
binds the other workers' sockets on the very address it got.

Every socket is made here, in the parent, before the fork, and the parent keeps them all open.
So the stop (``_stopper``) shuts each one down for reading, which wakes the worker blocked on
it (its copy shares the file description): every worker drains its queue and returns. And a
worker that dies leaves its socket in the group: the hash does not change, the datagrams of the
clients hashed to it wait in its queue (as many as its buffer holds), and its replacement,
forked within 0.1 s (``Supervisor.watch``), inherits the same socket and answers them, late.
Had each worker bound its own socket, its death would close it: Linux would rehash among the
sockets left (modulo N-1: most clients move, not only the dead worker's), drop its queue, and
rehash again when the replacement bound. Workers die with the parent (become_worker_process).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import socket
from collections.abc import Callable
from functools import partial

from servers.runtime import SHUT_DOWN, Server, become_worker_process, bind_beside
from servers.supervision import Supervisor

START_TIMEOUT_S = 30


def serve(server: Server) -> None:
    server.count_per_worker([f"process-{i}" for i in range(server.workers)], shared=True)
    socks = [server.sock, *(bind_beside(server.sock) for _ in range(1, server.workers))]
    stop = _stopper(server, socks)
    signal.signal(signal.SIGTERM, stop)  # server.request_stop would wake worker 0 alone
    signal.signal(signal.SIGINT, stop)
    if server.stop.requested:  # a signal came before these handlers
        _shut_down(socks)
    context = multiprocessing.get_context("fork")  # inherit the sockets and the counters
    all_started = context.Barrier(server.workers + 1)

    def start(i: int, barrier=None) -> multiprocessing.Process:  # a replacement starts alone
        process = context.Process(target=_worker, args=(server, socks[i], i, barrier),
                                  name=f"process-{i}")  # fmt: skip
        process.start()
        return process

    processes = [start(i, all_started) for i in range(server.workers)]
    all_started.wait(START_TIMEOUT_S)
    server.ready(worker_pids=[process.pid for process in processes])
    supervisor = Supervisor(server, stop=stop)
    forced = supervisor.watch(processes, start)  # until a stop shuts the sockets down
    for sock in socks[1:]:
        sock.close()  # server.sock: by stopped()
    server.stopped(forced, supervisor)


def _stopper(server: Server, socks: list[socket.socket]) -> Callable[..., None]:
    """``server.request_stop`` for every worker's socket: the signal handler, and the
    supervisor's stop if it gives up."""

    def stop(*_: object) -> None:
        server.request_stop()  # the stop asked (a second: no grace period), socks[0] shut down
        _shut_down(socks[1:])

    return stop


def _shut_down(socks: list[socket.socket]) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):  # ENOTCONN for unconnected UDP, yet its reader wakes
            sock.shutdown(socket.SHUT_RD)


def _worker(server: Server, sock: socket.socket, worker: int, all_started) -> None:
    """A forked process: the blocking loop on its own socket; its counts are shared."""
    become_worker_process()
    if all_started is not None:
        all_started.wait(START_TIMEOUT_S)
    handle = server.handle
    for datagram, address in iter(partial(sock.recvfrom, server.bufsize), SHUT_DOWN):
        if (reply := handle(datagram, worker)) is None:
            continue  # a message that asks no answer (sockperf's): counted as ignored
        try:
            sock.sendto(reply, address)
        except OSError as error:
            server.unsent(datagram, address, error, worker)
    server.flush_trace()  # its trace records live in this process: leave them in a file
