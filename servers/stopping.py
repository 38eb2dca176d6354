"""A server's stop: asked for once, with a grace period for the requests in progress.

``Stop`` is what ``Server.stop`` holds. Who uses what:

- ``ask()``: a stop is asked for (``Server.request_stop``, the signal handler, calls it and
  shuts the socket down; an event loop, which stops reading its own way, calls it alone). A
  second ask skips the grace period.
- ``requested``: whether one was asked for (a supervisor stops replacing workers then).
- ``grace_left()``: seconds left for the workers to finish (infinite before a stop), and
  ``poll_s()``, how long to wait before looking again, for a model that waits for its workers
  its own way.
- ``take_back(places, count)``: for a model that counts requests in progress with a semaphore
  (a place each), wait for the grace period at most until ``count`` places are free again;
  returns how many were.
- ``join(workers)``: wait for every worker to return, for the grace period at most after a
  stop; end the rest and return how many had to be ended (``forced``, which
  ``Server.stopped`` reports).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

# After a stop request, workers get this long to answer what they hold; then they are ended.
STOP_GRACE_S = 1.5
JOIN_POLL_S = 0.1  # how often a waiting main thread looks again (workers, a grace period)


class Acquirable(Protocol):  # a semaphore: threading's, or gevent's
    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool: ...


class Joinable(Protocol):
    def is_alive(self) -> bool: ...
    def join(self, timeout: float | None = None) -> None: ...


class Stop:
    """One server's stop request and grace period; see the module docstring."""

    def __init__(self) -> None:
        self._asked_at: float | None = None

    @property
    def requested(self) -> bool:
        return self._asked_at is not None

    def ask(self) -> None:
        """Record a stop request; a second one puts the end of the grace period in the past."""
        self._asked_at = -STOP_GRACE_S if self.requested else time.monotonic()

    def grace_left(self) -> float:
        """Seconds left for workers to finish after a stop request (infinite before one)."""
        if self._asked_at is None:
            return float("inf")
        return max(0.0, self._asked_at + STOP_GRACE_S - time.monotonic())

    def poll_s(self) -> float:
        """How long a waiting thread waits before it looks again: ``JOIN_POLL_S``, or what is
        left of the grace period if less (a second stop request ends it early)."""
        return min(JOIN_POLL_S, self.grace_left()) or JOIN_POLL_S

    def take_back(self, places: Acquirable, count: int) -> int:
        """Take back ``count`` places of ``places`` (each request in progress holds one), for
        the grace period at most; how many were taken (the rest are requests still busy)."""
        taken = 0
        while taken < count and places.acquire(timeout=self.grace_left()):
            taken += 1
        return taken

    def join(self, workers: Sequence[Joinable]) -> int:
        """Wait for every worker to return; after a stop request, at most the grace period.

        Workers still running then are ended (processes are killed; threads are daemons and
        end with this process a moment later), and their number returned: ``forced``.
        """
        while alive := [worker for worker in workers if worker.is_alive()]:
            if self.grace_left() == 0:
                for worker in alive:
                    if hasattr(worker, "kill"):
                        worker.kill()
                        worker.join(1.0)
                return len(alive)
            alive[0].join(self.poll_s())
        return 0
