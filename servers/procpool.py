"""procpool: one receive loop hands every datagram to a pool of N worker processes.

The loop never waits for a request: it submits the datagram to a ProcessPoolExecutor and goes
straight back to recvfrom; each reply is sent from a callback as soon as it is ready, so requests
overlap and finish out of order. The workers compute in parallel like ``processes``, but every
request pays for two hops between processes (pickled, through pipes): with ``--work echo`` that
toll is most of the cost, so a pool suits heavy requests, not tiny ones. At most
PENDING_PER_WORKER requests per worker are in the pool; the kernel's buffer holds (or drops) the
rest. A worker that dies breaks the whole pool (the executor's rule): its requests count as
failed, and a watcher replaces the pool within 0.1 s.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial

from servers.runtime import SHUT_DOWN, Address, Server, become_worker_process, kill_processes

PENDING_PER_WORKER = 16
START_TIMEOUT_S = 30
_server: Server  # in each worker process, set by _start_worker
_all_started: threading.Barrier


def serve(server: Server) -> None:
    server.count_per_worker([f"pool-{i}" for i in range(server.workers)])
    pool, worker_of_pid = _start_pool(server)
    pending = threading.BoundedSemaphore(server.workers * PENDING_PER_WORKER)
    lock = threading.RLock()  # callbacks run in the pool's thread; the watcher swaps the pool

    def send_reply(datagram: bytes, address: Address, workers: dict, future: Future) -> None:
        with lock:  # in the pool's thread, once the worker's reply is back
            try:
                reply, kind, timing, pid = future.result()
            except Exception:  # its worker died: the request is lost, counted, the loop goes on
                server.counters.record_failure(0)
            else:
                server.count(workers[pid], kind, timing)
                try:
                    server.sock.sendto(reply, address)
                except OSError as error:
                    server.unsent(datagram, address, error, workers[pid])
        pending.release()

    def replace() -> None:
        nonlocal pool, worker_of_pid
        with lock:
            pool.shutdown(wait=False, cancel_futures=True)
            pool, worker_of_pid = _start_pool(server)

    server.keep_replacing(lambda: bool(getattr(pool, "_broken", False)), replace)  # no public API
    server.ready(worker_pids=list(worker_of_pid))
    for datagram, address in iter(partial(server.sock.recvfrom, server.bufsize), SHUT_DOWN):
        pending.acquire()  # at most PENDING_PER_WORKER requests per worker in the pool
        with lock:
            try:
                future = pool.submit(_respond, datagram)  # the hand-off: the loop goes on
            except BrokenProcessPool as error:  # broke since the watcher last looked: lost
                future = Future()
                future.set_exception(error)
            future.add_done_callback(partial(send_reply, datagram, address, worker_of_pid))

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


def _respond(datagram: bytes):
    """In a pool worker: the reply, uncounted; the main process counts it and sends it."""
    return *_server.respond(datagram), os.getpid()  # (reply, kind, timing, pid)
