"""Supervision: a worker that ends unasked is replaced, unless workers die too often.

What a model with workers that can die (processes, reuseport, procpool, subinterpreters) uses:

- ``Supervisor(server, tells_deaths=False, stop=None)``: one per server, made by the model.
  ``tells_deaths=True`` where the model learns that a worker raised (``worker_died``); the
  stopped event then lists who did (``died``, a list even when empty). Elsewhere it is absent:
  a forked process that ends leaves only an exit code. ``stop``: how the server stops when the
  supervisor gives up, for a model whose stop is more than ``server.request_stop`` (reuseport
  shuts down a socket per worker).
- ``watch(workers, restart)``: the main thread's wait until a stop request, replacing each
  worker that ended by ``restart(its index)``; then ``server.stop.join``. Returns how many workers
  had to be ended (``forced``).
- ``replace_ended(i, worker, restart)``: the same for one worker, for a model that learns of a
  death its own way (procpool's reply thread sees the pipe's EOF).
- ``worker_died(label, error)``: a worker raised; logged now, listed in the stopped event.
- ``give_up(why)``: the server cannot go on (a worker never came up): stop, with exit status 1.
- ``fields()``: what the stopped event adds (``restarts``, ``died``), for ``Server.stopped``.

Attributes: ``restarts`` (per worker label, None until watching starts), ``died`` (labels, or
None without ``tells_deaths``), ``gave_up`` (the server stopped itself: exit status 1).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from servers.runtime import Server, log
from servers.stopping import JOIN_POLL_S

# A worker that ends unasked is replaced, unless workers die this often: then the fault is not
# a passing one and restarting would only hide it.
RESTART_LIMIT = 5
RESTART_WINDOW_S = 10.0


class Supervisor:
    """Replaces a server's workers that end unasked; see the module docstring."""

    def __init__(
        self, server: Server, tells_deaths: bool = False, stop: Callable[[], None] | None = None
    ) -> None:
        self.server = server
        self._stop = stop or server.request_stop
        self.restarts: dict[str, int] | None = None
        self.died: list[str] | None = [] if tells_deaths else None
        self.gave_up = False
        self._deaths: list[float] = []  # when workers ended unasked, recently

    def watch(self, workers: list[Any], restart: Callable[[int], Any]) -> int:
        """Until a stop request, replace each of ``workers`` that ended (within
        ``JOIN_POLL_S``); then wait for them all. Returns how many had to be ended."""
        server = self.server
        self.restarts = self.restarts or dict.fromkeys(server.counters.labels, 0)
        while not server.stop.requested:
            for i, worker in enumerate(workers):
                if worker.is_alive() or server.stop.requested:
                    continue
                workers[i] = self.replace_ended(i, worker, restart) or worker
            time.sleep(JOIN_POLL_S)
        return server.stop.join(workers)

    def replace_ended(self, i: int, worker: Any, restart: Callable[[int], Any]) -> Any:
        """Worker ``i`` ended unasked: reap it and return ``restart(i)``, or None after a stop
        request or when workers die too often (``may_restart``)."""
        worker.join(1.0)  # it has ended: this reaps it
        why = f"exit code {getattr(worker, 'exitcode', None)}"
        label = self.server.counters.labels[i]
        if not self.server.stop.requested and self.may_restart([label], why):
            return restart(i)
        return None

    def may_restart(self, labels: Sequence[str], why: str) -> bool:
        """Workers ``labels`` ended unasked: count a restart for each and say go ahead, unless
        workers died ``RESTART_LIMIT`` times in ``RESTART_WINDOW_S``: then give up."""
        if self.restarts is None:
            self.restarts = dict.fromkeys(self.server.counters.labels, 0)
        now = time.monotonic()
        self._deaths = [t for t in self._deaths if now - t < RESTART_WINDOW_S] + [now]
        who = ", ".join(labels)
        if len(self._deaths) >= RESTART_LIMIT:
            self.give_up(f"{len(self._deaths)} workers died within {RESTART_WINDOW_S:g} s (the "
                         f"last, {who}, {why}); not restarting them again")  # fmt: skip
            return False
        log(f"{self.server.config.model}: worker {who} ended ({why}); restarting")
        for label in labels:
            self.restarts[label] += 1
        return True

    def worker_died(self, label: str, error: BaseException) -> None:
        """A worker raised: report it (stderr now, the stopped event later); the others go on."""
        if self.died is not None:
            self.died.append(label)  # not a copy: two workers may die at once
        log(f"{self.server.config.model}: worker {label} died: {error}")

    def give_up(self, why: str) -> None:
        """The server cannot go on: say why, stop it, and make its exit status 1."""
        log(f"{self.server.config.model}: {why}: stopping")
        self.gave_up = True
        self._stop()

    def fields(self) -> dict[str, Any]:
        """The stopped event's share: restarts per worker, and who died where that is known."""
        return {key: value for key, value in (("died", self.died), ("restarts", self.restarts))
                if value is not None}  # fmt: skip
