"""procpool: one receive loop hands datagrams, in batches, to a pool of N worker processes.

The loop takes what the socket holds (a blocking recvfrom, then non-blocking ones until EAGAIN,
at most BATCH_MAX), writes a part down each idle worker's pipe (or all to the least busy one)
and goes back to recvfrom; a worker sends its replies back every FLUSH_S, and a thread of the
main process sends them on. Each request pays for a hop there and back (pickling, a write and
a read each way, two wake-ups): the price of a pool, which an executor's helper threads raise.
The main process counts. A worker that dies is replaced; what it held is counted as failed.
The pool's plumbing (forking, slots, replacing) is ``servers.pool``.
"""

from __future__ import annotations

import threading
import time
from functools import partial

from servers.pool import Pool
from servers.runtime import SHUT_DOWN, Server, become_worker_process, signals_to_main
from servers.stopping import JOIN_POLL_S
from servers.supervision import Supervisor

BATCH_MAX = 64  # datagrams taken from the socket per turn at most
FLUSH_S = 0.0005  # a worker sends back the replies it has once the first waited this long


def serve(server: Server) -> None:
    server.count_per_worker([f"pool-{i}" for i in range(server.workers)])
    pool = Pool(server, Supervisor(server), _work)
    replier = threading.Thread(target=_send_replies, args=(pool,), name="replies", daemon=True)
    with signals_to_main():  # a stop must wake the recvfrom below, not this thread
        replier.start()
    server.ready(worker_pids=[member.process.pid for member in pool.members])

    for datagram, address in iter(partial(server.sock.recvfrom, server.bufsize), SHUT_DOWN):
        pool.slots.acquire()  # a slot per request out: a bounded number per worker
        pool.hand_out([(datagram, address), *pool.queued(BATCH_MAX - 1)])  # and what waits

    pool.drain()  # every reply sent, or the grace period over
    replier.join()
    server.stopped(pool.close(), pool.supervisor)


def _send_replies(pool: Pool) -> None:
    """The reply thread: each worker's replies as they come back, to their clients."""
    server = pool.server
    while not pool.done.is_set():
        for key, _ in pool.selector.select(JOIN_POLL_S):
            i = key.data
            try:
                replies = key.fileobj.recv()
            except (EOFError, OSError):  # it died: what it held is lost
                pool.replace(i)
                continue
            held = pool.members[i].held  # in the order it was handed out
            for reply, kind, timing in replies:
                datagram, address = held.popleft()
                server.count(i, kind, timing)
                try:
                    if reply is not None:  # None: a message that asks no answer (sockperf's)
                        server.sock.sendto(reply, address)
                except OSError as error:
                    server.unsent(datagram, address, error, i)
            pool.slots.release(len(replies))


def _work(server: Server, pipe) -> None:
    """A pool worker, forked: it answers each batch; the main process counts and sends."""
    become_worker_process()
    for datagrams in iter(pipe.recv, []):  # an empty batch: nothing more
        replies, since = [], time.monotonic()
        for n, datagram in enumerate(datagrams, 1):
            replies.append(server.respond(datagram))
            if n == len(datagrams) or time.monotonic() - since > FLUSH_S:  # ready: send them
                pipe.send(replies)
                replies, since = [], time.monotonic()
