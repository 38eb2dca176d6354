"""procpool: one receive loop hands every datagram to a pool of N worker processes.

The loop never waits for a request: it submits the datagram to a ProcessPoolExecutor and goes
straight back to recvfrom; each reply is sent from a callback as soon as it is ready, so requests
overlap and finish out of order. The workers compute in parallel like ``processes``, but every
request pays for two hops between processes (pickled, through pipes): with ``--work echo`` that
toll is most of the cost, so a pool suits heavy requests, not tiny ones. At most
PENDING_PER_WORKER requests per worker are in the pool; past that the kernel's buffer holds (or
drops) the rest, as for every model. A worker that dies breaks the whole pool (the executor's
rule): its requests count as failed, and a watcher replaces the pool within 0.1 s.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial

from servers.runtime import Address, Server, become_worker_process, kill_processes

PENDING_PER_WORKER = 16
START_TIMEOUT_S = 30
_server: Server  # in each worker process, set by _start_worker
_all_started: threading.Barrier


def serve(server: Server) -> None:
    server.count_per_worker([f"pool-{i}" for i in range(server.workers)])
    pool, worker_of_pid = _start_pool(server)
    pending = threading.BoundedSemaphore(server.workers * PENDING_PER_WORKER)
    lock = threading.RLock()  # callbacks run in the pool's thread; the watcher swaps the pool

    def reply_when_done(future: Future, address: Address, workers: dict[int, int]) -> None:
        with lock:
            try:
                reply, kind, pid, timing = future.result()
            except Exception:  # its worker died: the request is lost, counted, the loop goes on
                server.counters.record_failure(0)
            else:
                server.send(reply, kind, address, workers[pid], timing)
        pending.release()

    def dispatch(datagram: bytes, address: Address) -> None:
        pending.acquire()
        with lock:
            try:
                future = pool.submit(_handle, datagram)
            except BrokenProcessPool as error:  # broke since the watcher last looked: lost
                future = Future()
                future.set_exception(error)
            future.add_done_callback(partial(reply_when_done, address=address,
                                             workers=worker_of_pid))  # fmt: skip

    def replace() -> None:
        nonlocal pool, worker_of_pid
        with lock:
            pool.shutdown(wait=False, cancel_futures=True)
            pool, worker_of_pid = _start_pool(server)

    server.keep_replacing(lambda: bool(getattr(pool, "_broken", False)), replace)  # no public API
    server.ready(worker_pids=list(worker_of_pid))
    server.receive_loop(dispatch)

    if not server.drain(pending, server.workers * PENDING_PER_WORKER):  # every reply sent?
        server.forced = server.workers
        kill_processes(list(worker_of_pid))  # still computing after the grace period
    with lock:  # not held while shutting down: the last callbacks take it
        final = pool
    final.shutdown(wait=True, cancel_futures=True)
    server.stopped()


def _start_pool(server: Server) -> tuple[ProcessPoolExecutor, dict[int, int]]:
    """A pool of ``server.workers`` forked workers, each up; and each pid's worker number."""
    context = multiprocessing.get_context("fork")  # workers inherit the calibrated work
    all_started = context.Barrier(server.workers)
    pool = ProcessPoolExecutor(server.workers, context, initializer=_start_worker,
                               initargs=(server, all_started))  # fmt: skip
    pids = list(pool.map(_check_in, range(server.workers)))  # all up, one task each
    return pool, {pid: i for i, pid in enumerate(pids)}


def _start_worker(server: Server, all_started) -> None:
    global _server, _all_started
    become_worker_process()
    _server, _all_started = server, all_started


def _check_in(_: int) -> int:
    _all_started.wait(START_TIMEOUT_S)  # holds each worker until all have taken one task
    return os.getpid()


def _handle(datagram: bytes):
    reply, kind, timing = _server.respond(datagram)
    return reply, kind, os.getpid(), timing
