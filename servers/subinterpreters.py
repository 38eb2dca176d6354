"""subinterpreters: one process, N sub-interpreters, each blocking in recvfrom on the one socket.

Since Python 3.12 (PEP 684) a sub-interpreter can have its own GIL, so ``cpu=2ms`` work runs
truly in parallel, one request per core at a time, like the ``processes`` model, yet in ONE
process: each interpreter runs on its own thread, as the ``threads`` model, but the threads no
longer take turns, because each holds a different GIL. What it costs: interpreters share no
Python objects, so each imports the server code afresh, and C extensions that keep global state
(greenlet, hdrhistogram, ctypes on 3.12) refuse to load in one.

Each interpreter runs the whole recvfrom -> handle -> sendto loop itself (``_worker``), on a dup
of the socket's fd: the same kernel socket, so the kernel hands each datagram to one waiting
reader, and ``request_stop``'s shutdown wakes them all. One receiving loop feeding them through
interpreter queues would add a hand-over per request (the backport's queues pickle) and put one
loop, on the main GIL, before all the cores, as ``procpool`` does. The protocol travels in the
handoff. Counts go to a shared mapping, so a worker that dies (raises) keeps its row; it is
logged, listed as ``died`` in the stopped event, and replaced, while the others go on.
"""

from __future__ import annotations

import os
import sys
import threading
from functools import partial

from servers.handoff import CheckIns, adopt, handoff
from servers.runtime import SHUT_DOWN, Server
from servers.supervision import Supervisor

START_TIMEOUT_S = 30
# Runs in each new interpreter: find this package as the main interpreter does, then serve.
BOOT = """
import sys
sys.path[:] = path
from servers.subinterpreters import _worker
_worker(state)
"""
DIE_ON = "SERVERS_TEST_DIE_ON"  # test-only: a datagram of these bytes makes its receiver raise


def serve(server: Server) -> None:
    try:
        from concurrent import interpreters  # Python 3.14+
    except ImportError:
        from backports import interpreters  # PEP 734's backport for 3.12 and 3.13

    labels = [f"interp-{i}" for i in range(server.workers)]
    server.count_per_worker(labels, shared=True)
    supervisor = Supervisor(server, tells_deaths=True)  # an interpreter that raises says so
    check_ins = CheckIns()

    def start(i: int) -> threading.Thread:
        interp = interpreters.create()  # its own GIL: PEP 734's create() makes isolated ones
        interp.prepare_main(path=tuple(sys.path), state=handoff(server, i, check_ins.write_fd))
        thread = threading.Thread(target=_run, args=(supervisor, interp, i, check_ins),
                                  name=labels[i], daemon=True)  # fmt: skip
        thread.start()
        return thread

    threads = [start(i) for i in range(server.workers)]
    up = check_ins.wait(server.workers, START_TIMEOUT_S)

    if up and up + len(supervisor.died or ()) == server.workers:
        server.ready()
    else:  # none came up, or one hangs in its start: never "ready" with a worker unaccounted
        supervisor.give_up(f"{up} of {server.workers} interpreters up after start")
    forced = supervisor.watch(threads, start)  # one that dies is replaced, until a stop request

    server.stopped(forced, supervisor)
    if forced:  # an interpreter still computing cannot be ended; 3.12 aborts finalizing it
        os._exit(1 if supervisor.gave_up else 0)


def _run(supervisor: Supervisor, interp, worker: int, check_ins: CheckIns) -> None:
    """A thread of the main interpreter that runs one sub-interpreter's worker to its end."""
    try:
        interp.exec(BOOT)  # returns when the worker's receive loop ends
    except Exception as error:  # ExecutionFailed: the worker raised; never let it go unseen
        supervisor.worker_died(supervisor.server.counters.labels[worker], error)
        CheckIns.report(check_ins.write_fd, worker, up=False)
    finally:
        interp.close()


def _worker(state: str) -> None:
    """Inside a sub-interpreter: rebuild the server on a dup of the socket; the blocking loop."""
    server, worker, check_in_fd = adopt(state)
    handle, die_on = server.handle, os.environ.get(DIE_ON, "").encode()
    CheckIns.report(check_in_fd, worker, up=True)  # about to receive
    with server.sock as sock:  # this interpreter's dup, closed when the loop ends
        for datagram, address in iter(partial(sock.recvfrom, server.bufsize), SHUT_DOWN):
            if die_on and datagram == die_on:
                raise RuntimeError(f"{DIE_ON}: told to die on {datagram!r}")
            if (reply := handle(datagram, worker)) is None:
                continue  # a message that asks no answer (sockperf's): counted as ignored
            try:
                sock.sendto(reply, address)
            except OSError as error:
                server.unsent(datagram, address, error, worker)
        server.flush_trace()  # its records live in this interpreter: leave them in a file
