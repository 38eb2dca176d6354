"""procpool: one receive loop hands datagrams, in batches, to a pool of N worker processes.

The loop takes what the socket holds (a blocking recvfrom, then non-blocking ones until EAGAIN,
at most BATCH_MAX), writes a part down each idle worker's pipe (or all to the least busy one)
and goes back to recvfrom; a worker sends its replies back every FLUSH_S, a thread sends them.
A hop there and back: ~20 µs (~10 here): pickling (~2 µs), a write and a read each way, two
wake-ups (an executor's helper threads: ~85 µs). Echo, 32 in flight: ~70,000 replies/s at ~13 µs
of CPU each (an executor: ~11,500); alone ~90 µs (processes ~30). A dead worker is replaced.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import selectors
import threading
import time
from collections import deque
from functools import partial

from servers.runtime import JOIN_POLL_S, SHUT_DOWN, Server, become_worker_process

PENDING_PER_WORKER, BATCH_MAX = 16, 64  # requests out per worker; datagrams taken per turn
FLUSH_S = 0.0005  # a worker sends back the replies it has once the first waited this long


def serve(server: Server) -> None:
    server.count_per_worker([f"pool-{i}" for i in range(server.workers)])
    selector = selectors.DefaultSelector()  # the reply thread waits on every worker's pipe
    restart = partial(_start, multiprocessing.get_context("fork"), server, selector)
    pool = [restart(i) for i in range(server.workers)]  # (process, pipe) each
    held = [deque() for _ in pool]  # what each worker holds, in order: (datagram, address)
    pending = threading.BoundedSemaphore(server.workers * PENDING_PER_WORKER)
    lock, done = threading.Lock(), threading.Event()  # the lock: a hand-off, or a replacement

    def send_replies() -> None:  # a thread: each worker's replies, as they come back
        while not done.is_set():
            for key, _ in selector.select(JOIN_POLL_S):
                pipe, i = key.fileobj, key.data
                try:
                    replies = pipe.recv()
                except (EOFError, OSError):  # it died: what it held is lost, counted
                    with lock:
                        selector.unregister(pipe)
                        lost = len(held[i])
                        held[i].clear()
                        server.counters.record_failure(i, lost)
                        if lost:
                            pending.release(lost)
                        pool[i] = server.replace_ended(i, pool[i][0], restart) or pool[i]
                    continue
                for reply, kind, timing in replies:
                    datagram, address = held[i].popleft()
                    server.count(i, kind, timing)
                    try:
                        if reply is not None:  # None: a message that asks no answer (sockperf's)
                            server.sock.sendto(reply, address)
                    except OSError as error:
                        server.unsent(datagram, address, error, i)
                pending.release(len(replies))

    (replier := threading.Thread(target=send_replies, name="replies", daemon=True)).start()
    server.ready(worker_pids=[process.pid for process, _ in pool])
    for datagram, address in iter(partial(server.sock.recvfrom, server.bufsize), SHUT_DOWN):
        pending.acquire()  # a slot per request out: at most PENDING_PER_WORKER a worker
        batch = [(datagram, address), *server.queued(pending, BATCH_MAX - 1)]  # and the rest
        with lock:
            live = range(len(pool))  # (one not replaced, as the server gives up, holds its part)
            idle = [i for i in live if not held[i]] or [min(live, key=lambda i: len(held[i]))]
            for k, i in enumerate(idle := idle[: len(batch)]):  # a part per idle worker
                held[i].extend(part := batch[k :: len(idle)])
                with contextlib.suppress(OSError):  # it died: the reply thread counts its part
                    pool[i][1].send([datagram for datagram, _ in part])  # the hand-off
    server.drain(pending, server.workers * PENDING_PER_WORKER)  # every reply sent, or grace over
    done.set()
    replier.join()
    for entry in pool:
        with contextlib.suppress(OSError):  # one that just died
            entry[1].send([])  # nothing more: the worker returns
    server.join([entry[0] for entry in pool])  # past the grace period: killed
    server.stopped()


def _start(context, server: Server, selector: selectors.BaseSelector, i: int) -> tuple:
    mine, its = context.Pipe()  # a forked worker, and the main process's end of its pipe
    (process := context.Process(target=_work, args=(server, its), name=f"pool-{i}")).start()
    its.close()  # the worker holds the only copy: its death is this end's EOF
    selector.register(mine, selectors.EVENT_READ, i)
    return process, mine


def _work(server: Server, pipe) -> None:  # a pool worker: it answers, the main process counts
    become_worker_process()
    while datagrams := pipe.recv():
        replies, since = [], time.monotonic()
        for n, datagram in enumerate(datagrams, 1):
            replies.append(server.respond(datagram))
            if n == len(datagrams) or time.monotonic() - since > FLUSH_S:  # ready: send them
                pipe.send(replies)
                replies, since = [], time.monotonic()
