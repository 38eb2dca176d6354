"""procpool: one receive loop hands datagrams, in batches, to a pool of N worker processes.

The loop never waits for a request: it takes what the socket holds (a blocking recvfrom, then
non-blocking ones until EAGAIN, at most BATCH_MAX), splits it into one part per idle worker,
submits each part to a ProcessPoolExecutor and goes back to recvfrom; a part's replies are sent
from a callback as soon as it is back. The workers compute in parallel like ``processes``, but
each part pays two hops between processes (pickled, through pipes, and the executor's threads).
At most PENDING_PER_WORKER requests per worker are in the pool; the kernel's buffer holds the
rest. A dying worker breaks the pool: its requests count as failed; a watcher replaces it.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from functools import partial

from servers.runtime import SHUT_DOWN, Server, become_worker_process, kill_processes

PENDING_PER_WORKER = 16
BATCH_MAX = 64  # datagrams taken from the socket per turn of the loop
START_TIMEOUT_S = 30
_in_worker: dict = {}  # in each pool worker: the server, the start barrier, its number


def serve(server: Server) -> None:
    server.count_per_worker([f"pool-{i}" for i in range(server.workers)])
    pool, pids = _start_pool(server)
    pending = threading.BoundedSemaphore(server.workers * PENDING_PER_WORKER)
    lock = threading.RLock()  # callbacks run in the pool's thread; the watcher swaps the pool
    busy = 0  # parts in the pool, under the lock

    def send_replies(part: list, future: Future) -> None:
        nonlocal busy
        with lock:  # in the pool's thread, once the worker's replies are back
            busy -= 1
            try:
                worker, replies = future.result()
            except Exception:  # its worker died: the requests are lost, counted, the loop goes on
                server.counters.record_failure(0, len(part))
            else:
                for (datagram, address), (reply, kind, timing) in zip(part, replies, strict=True):
                    server.count(worker, kind, timing)
                    try:
                        server.sock.sendto(reply, address)
                    except OSError as error:
                        server.unsent(datagram, address, error, worker)
        pending.release(len(part))

    def replace() -> None:
        nonlocal pool, pids
        with lock:
            pool.shutdown(wait=False, cancel_futures=True)
            pool, pids = _start_pool(server)

    server.keep_replacing(lambda: bool(getattr(pool, "_broken", False)), replace)  # no public API
    server.ready(worker_pids=pids)
    for datagram, address in iter(partial(server.sock.recvfrom, server.bufsize), SHUT_DOWN):
        pending.acquire()  # a slot per request in the pool: at most PENDING_PER_WORKER a worker
        batch = [(datagram, address), *server.queued(pending, BATCH_MAX - 1)]  # and the rest
        with lock:
            parts = max(1, min(len(batch), server.workers - busy))  # one per idle worker
            for part in (batch[i::parts] for i in range(parts)):
                busy += 1
                try:  # the hand-off: pickled, to whichever worker is free; the loop goes on
                    future = pool.submit(_respond, [datagram for datagram, _ in part])
                except RuntimeError as error:  # BrokenProcessPool since the watcher looked: lost
                    (future := Future()).set_exception(error)
                future.add_done_callback(partial(send_replies, part))

    if not server.drain(pending, server.workers * PENDING_PER_WORKER):  # every reply sent?
        server.forced = server.workers
        kill_processes(pids)  # still computing after the grace period
    with lock:  # not held while shutting down: the last callbacks take it
        final = pool
    final.shutdown(wait=True, cancel_futures=True)
    server.stopped()


def _start_pool(server: Server) -> tuple[ProcessPoolExecutor, list[int]]:
    """A pool of ``server.workers`` forked workers, each up and numbered; their pids."""
    context = multiprocessing.get_context("fork")  # workers inherit the calibrated work
    inherited = {"server": server, "all_started": context.Barrier(server.workers)}
    pool = ProcessPoolExecutor(server.workers, context, initializer=_in_worker.update,
                               initargs=(inherited,))  # fmt: skip
    return pool, list(pool.map(_check_in, range(server.workers)))  # all up, one task each


def _check_in(worker: int) -> int:
    become_worker_process()
    _in_worker["worker"] = worker
    _in_worker["all_started"].wait(START_TIMEOUT_S)  # each worker takes one task, then waits
    return os.getpid()


def _respond(datagrams: list[bytes]) -> tuple[int, list]:
    """In a pool worker: its number and each reply, uncounted; the main process counts them."""
    return _in_worker["worker"], [_in_worker["server"].respond(d) for d in datagrams]
