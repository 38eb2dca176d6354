"""interppool: one receive loop hands each datagram to the standard library's interpreter pool.

``concurrent.futures.InterpreterPoolExecutor`` (Python 3.14; on 3.13 the interpreters-pep-734
backport's) runs each call in a sub-interpreter of its own, on a thread of its own, so CPU work
runs in parallel in ONE process, as in ``subinterpreters``. What differs is who receives: here
one loop in the main interpreter receives every datagram and submits it; the call and the
datagram are pickled into a worker interpreter, the reply is pickled back, and a thread of the
main interpreter counts it and sends it. That hop, under the main interpreter's GIL, is the
toll: ``procpool``'s twin in one process, in the standard library's words. The pool starts an
interpreter when a call finds none idle, N (``--workers``) at most; all N are started before
"ready". It holds at most ``PENDING_PER_WORKER`` requests per interpreter: the rest wait in the
kernel. (What the toll measured: docs/measurements.md.) An interpreter still computing when
the grace period ends cannot be ended: the process exits past it.
"""

from __future__ import annotations

import os
import socket
import threading
from concurrent.futures import Future
from functools import partial

from servers.handoff import config_of, config_text, start_every_worker
from servers.runtime import SHUT_DOWN, Address, Handled, Server, log, signals_to_main

NUMBER_BYTES = 8  # one worker number in the pipe an interpreter takes its number from
# Requests in the pool per interpreter at most: more than one, so that an interpreter finds the
# next request waiting while its last reply goes back through the main interpreter.
PENDING_PER_WORKER = 4
_mine: tuple[Server, int] | None = None  # in a worker interpreter: its server and number


def serve(server: Server) -> None:
    try:
        from concurrent.futures import InterpreterPoolExecutor  # Python 3.14+
    except ImportError:  # 3.13: PEP 734's backport, which carries the executor
        from interpreters_backport.concurrent.futures.interpreter import InterpreterPoolExecutor

    server.count_per_worker([f"interp-{i}" for i in range(server.workers)])
    numbers, numbers_in = os.pipe()  # each interpreter takes the next number as it starts
    os.write(numbers_in, b"".join(b"%8d" % i for i in range(server.workers)))
    pool = InterpreterPoolExecutor(server.workers, initializer=_start,
                                   initargs=(config_text(server), numbers))  # fmt: skip
    with signals_to_main():  # the pool's threads: a stop must wake this one's recvfrom
        start_every_worker(pool, server.workers)  # before "ready": none starts in a request
    os.close(numbers), os.close(numbers_in)  # every interpreter has taken its number
    places = threading.BoundedSemaphore(server.workers * PENDING_PER_WORKER)
    server.ready()

    for datagram, address in iter(partial(server.sock.recvfrom, server.bufsize), SHUT_DOWN):
        places.acquire()
        future = pool.submit(_respond, datagram)
        future.add_done_callback(partial(_reply, server, places, datagram, address))

    most = server.workers * PENDING_PER_WORKER  # all in the pool get the grace period
    forced = min(server.workers, most - server.stop.take_back(places, most))  # still busy
    pool.shutdown(wait=not forced, cancel_futures=True)
    server.stopped(forced)
    if forced:  # an interpreter still computing cannot be ended
        os._exit(0)


def _reply(
    server: Server, places: threading.Semaphore, datagram: bytes, address: Address, done: Future
) -> None:  # fmt: skip
    """On a thread of the main interpreter, once an interpreter has answered: count, send."""
    try:
        (reply, kind, timing), worker = done.result()
        server.count(worker, kind, timing)
        try:
            if reply is not None:  # None: a message that asks no answer (sockperf's)
                server.sock.sendto(reply, address)
        except OSError as error:
            server.unsent(datagram, address, error, worker)
    except Exception as error:  # it raised in its interpreter: count it, serve on
        server.counters.record_failure(0)
        log(f"{server.config.model}: request failed: {error!r}")
    finally:
        places.release()


def _start(config: str, numbers: int) -> None:
    """Once in each worker interpreter, as the pool starts it: its number, and a server to
    answer with (its socket unused: the main interpreter receives and sends)."""
    global _mine
    number, config_here = int(os.read(numbers, NUMBER_BYTES)), config_of(config)
    _mine = Server(config_here, socket.socket(type=socket.SOCK_DGRAM), config_here.work), number


def _respond(datagram: bytes) -> tuple[Handled, int]:
    """In a worker interpreter: the reply, how to count it, and this interpreter's number."""
    assert _mine is not None, "the pool's initializer did not run"
    server, number = _mine
    return server.respond(datagram), number
