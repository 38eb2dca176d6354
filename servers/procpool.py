"""procpool: one receive loop hands every datagram to a pool of N worker processes.

The loop never waits for a request: it submits the datagram to a ProcessPoolExecutor and goes
straight back to recvfrom; each reply is sent from a callback the moment its result is ready,
so requests overlap and finish out of order. The workers compute in parallel like the
``processes`` model, but every request pays for two hops between processes: the datagram and
the reply are pickled and pass through pipes. With ``--work echo`` that toll is most of the cost,
which is why a pool suits heavy requests and not tiny ones.

At most PENDING_PER_WORKER requests per worker are in the pool at once; past that the loop
stops receiving and the kernel's buffer holds (or drops) the rest, as for every other model,
instead of an unbounded queue in memory hiding the overload.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import suppress
from functools import partial

from servers.runtime import Address, Server, become_worker_process, log

PENDING_PER_WORKER = 16
START_TIMEOUT_S = 30
_server: Server  # in each worker process, set by _start_worker
_all_started: threading.Barrier


def serve(server: Server) -> None:
    context = multiprocessing.get_context("fork")  # workers inherit the calibrated work
    all_started = context.Barrier(server.workers)
    pool = ProcessPoolExecutor(
        server.workers, context, initializer=_start_worker, initargs=(server, all_started)
    )
    worker_pids = list(pool.map(_check_in, range(server.workers)))  # all up, one task each
    server.count_per_worker([f"pool-{i}" for i in range(server.workers)])
    worker_of_pid = {pid: i for i, pid in enumerate(worker_pids)}
    pending = threading.BoundedSemaphore(server.workers * PENDING_PER_WORKER)
    counting = threading.Lock()  # callbacks run in the pool's thread and, rarely, in this one

    def reply_when_done(future: Future, address: Address) -> None:
        try:
            reply, kind, pid, timing = future.result()
        except Exception as error:  # a worker died: the request is lost, the loop goes on
            log(f"procpool: a request failed in the pool: {error!r}")
            with counting:
                server.counters.record_failure(0)
        else:
            with counting:
                server.send(reply, kind, address, worker_of_pid[pid], timing)
        pending.release()

    def dispatch(datagram: bytes, address: Address) -> None:
        pending.acquire()
        try:
            future = pool.submit(_handle, datagram)
        except RuntimeError as error:  # BrokenProcessPool: nothing left to hand work to
            pending.release()
            log(f"procpool: the pool is broken ({error}); stopping")
            server.request_stop()
            return
        future.add_done_callback(partial(reply_when_done, address=address))

    server.ready(worker_pids=worker_pids)
    server.receive_loop(dispatch)

    # Drain: wait for every slot to come back (all replies sent), within the grace period.
    for _ in range(server.workers * PENDING_PER_WORKER):
        if not pending.acquire(timeout=server.grace_left()):
            server.forced = server.workers
            for pid in worker_pids:  # still computing after the grace period: end them
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            break
    pool.shutdown(wait=True, cancel_futures=True)
    server.stopped()


def _start_worker(server: Server, all_started) -> None:
    global _server, _all_started
    become_worker_process()
    _server, _all_started = server, all_started


def _check_in(_: int) -> int:
    _all_started.wait(START_TIMEOUT_S)  # holds each worker until all have taken one task
    return os.getpid()


def _handle(datagram: bytes):
    reply, kind, timing = _server.handle(datagram)
    return reply, kind, os.getpid(), timing
