"""The plumbing of ``procpool``'s pool: its forked workers, what each holds, the slots.

``Pool(server, supervisor, work)`` forks ``server.workers`` processes that each run
``work(server, pipe)``. The receive loop takes ``slots`` (one per request out), fills a batch
with ``queued`` and hands it out with ``hand_out``; the reply thread reads ``members[i].held``
in order and calls ``replace(i)`` when a worker's pipe ends; at the stop, ``drain`` waits for
every reply and ``close`` ends the workers.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import selectors
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from socket import MSG_DONTWAIT
from typing import Any

from servers.runtime import Address, Server
from servers.supervision import Supervisor

PENDING_PER_WORKER = 16  # requests out per worker at most


@dataclass
class Member:
    """A worker of the pool: its process, the main process's end of its pipe, and what it
    holds, in order: (datagram, address) each."""

    process: Any
    pipe: Any
    held: deque[tuple[bytes, Address]] = field(default_factory=deque)


class Pool:
    """N forked workers (``members``), the slots for requests out, the selector the reply
    thread waits on, and the lock that keeps a hand-off and a replacement apart."""

    def __init__(
        self, server: Server, supervisor: Supervisor, work: Callable[[Server, Any], None]
    ) -> None:
        self.server, self.supervisor, self.work = server, supervisor, work
        self.context = multiprocessing.get_context("fork")  # workers inherit the server
        self.selector = selectors.DefaultSelector()  # the reply thread waits on every pipe
        self.members = [self.start(i) for i in range(server.workers)]
        self.slots = threading.BoundedSemaphore(server.workers * PENDING_PER_WORKER)
        self.lock, self.done = threading.Lock(), threading.Event()  # lock: hand-off, replacing

    def start(self, i: int) -> Member:
        mine, its = self.context.Pipe()
        process = self.context.Process(target=self.work, args=(self.server, its), name=f"pool-{i}")
        process.start()
        its.close()  # the worker holds the only copy: its death is this end's EOF
        self.selector.register(mine, selectors.EVENT_READ, i)
        return Member(process, mine)

    def queued(self, most: int) -> list[tuple[bytes, Address]]:
        """What the socket already holds, without waiting: at most ``most``, a slot each."""
        batch: list[tuple[bytes, Address]] = []
        while len(batch) < most and self.slots.acquire(blocking=False):
            try:
                datagram, address = self.server.sock.recvfrom(self.server.bufsize, MSG_DONTWAIT)
            except OSError:  # EAGAIN: nothing more queued (after a stop too, on Linux)
                address = None
            if address is None:  # (or the stop: the blocking recvfrom after this sees it)
                self.slots.release()
                break
            batch.append((datagram, address))
        return batch

    def hand_out(self, batch: list[tuple[bytes, Address]]) -> None:
        """A part of ``batch`` down each idle worker's pipe, or all of it to the least busy."""
        with self.lock:
            idle = [m for m in self.members if not m.held]
            idle = idle[: len(batch)] or [min(self.members, key=lambda m: len(m.held))]
            for k, member in enumerate(idle):
                part = batch[k :: len(idle)]
                member.held.extend(part)
                with contextlib.suppress(OSError):  # it died: the reply thread counts its part
                    member.pipe.send([datagram for datagram, _ in part])

    def replace(self, i: int) -> None:
        """Worker ``i`` died: what it held is lost, counted as failed; a new one takes its
        place, unless the supervisor gives up (and so stops the server)."""
        with self.lock:
            member = self.members[i]
            self.selector.unregister(member.pipe)
            lost = len(member.held)
            member.held.clear()
            self.server.counters.record_failure(i, lost)
            if lost:
                self.slots.release(lost)
            self.members[i] = self.supervisor.replace_ended(i, member.process, self.start) or member

    def drain(self) -> None:
        """Take back every slot (every reply sent) within the grace period, then stop the
        reply thread."""
        self.server.stop.take_back(self.slots, self.server.workers * PENDING_PER_WORKER)
        self.done.set()

    def close(self) -> int:
        """Tell every worker there is nothing more; the number that had to be killed."""
        for member in self.members:
            with contextlib.suppress(OSError):  # one that just died
                member.pipe.send([])
        return self.server.stop.join([member.process for member in self.members])
