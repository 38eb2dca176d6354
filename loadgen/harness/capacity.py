"""What the machine can deliver right now: the same pure-Python work on one core, then on all.

A model's speed-up is only as good as the machine it ran on: on a two-core laptop with a
browser open, or a VM whose neighbour wakes up, two processes of pure Python may do 1.6x one,
not 2.0x, and a core may do a third less work per CPU-second than it did a minute ago. So the
bench asks the machine itself, between its runs, with the very loop the servers compute
(``servers.work.burn``):

- ``solo_rate``: iterations per second of one process alone;
- ``parallel_rate``: iterations per second of ``workers`` processes together, one per core;
- ``capacity`` (their ratio): how many cores' worth of work the machine delivered, the ceiling
  of any model's speed-up at that moment;
- ``cpu_share``: CPU time over wall time of the parallel phase: below one, the probe's
  processes waited for a core (someone else ran), or the hypervisor did not run them.

``Probe`` starts its processes once (spawned: nothing of the caller's state is inherited) and
keeps them blocked on a pipe between readings, so a reading costs its two phases and nothing
else. Use it as a context manager; ``read()`` takes one reading.
"""

from __future__ import annotations

import multiprocessing
import signal
import time
from dataclasses import dataclass
from typing import Any

from servers import available_cores
from servers.work import burn

PHASE_S = 0.1  # each phase: long enough to hold ~100 chunks, short enough to run often
CHUNK_ITERATIONS = 2000  # about 0.1 ms of work: the deadline is checked this often
START_DELAY_NS = 5_000_000  # the processes of a phase start together, this long after asking


@dataclass(frozen=True)
class Reading:
    """One reading of the machine (rates in iterations of ``burn`` per second)."""

    solo_rate: float
    parallel_rate: float
    workers: int
    cpu_share: float  # parallel phase: CPU seconds over wall seconds, per process

    @property
    def capacity(self) -> float:
        """Cores' worth of work delivered with every core busy (ideally ``workers``)."""
        return self.parallel_rate / self.solo_rate if self.solo_rate else 0.0


def _worker(conn: Any) -> None:
    """Wait for (start_ns, end_ns); burn chunks from start to end; answer (iterations, wall s,
    CPU s). None ends the process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it ends us
    burn(100 * CHUNK_ITERATIONS)  # the first chunks of a fresh interpreter run slow
    conn.send("ready")
    while (asked := _next(conn)) is not None:
        start_ns, end_ns = asked
        while time.monotonic_ns() < start_ns:
            pass  # a spin of a few ms: every process of a phase starts at the same instant
        cpu, done, now = time.thread_time(), 0, time.monotonic_ns()
        while now < end_ns:
            burn(CHUNK_ITERATIONS)
            done += CHUNK_ITERATIONS
            now = time.monotonic_ns()
        conn.send((done, (now - start_ns) / 1e9, time.thread_time() - cpu))


def _next(conn: Any) -> Any:
    """The next request; None once the parent has gone (its end of the pipe closed)."""
    try:
        return conn.recv()
    except (EOFError, OSError):
        return None


class Probe:
    """``workers`` probe processes (one per available core by default), ready to read."""

    def __init__(self, workers: int | None = None, phase_s: float = PHASE_S) -> None:
        self.workers = workers or available_cores()
        self.phase_s = phase_s
        context = multiprocessing.get_context("spawn")
        self.links, self.processes = [], []
        for _ in range(self.workers):
            mine, theirs = context.Pipe()
            process = context.Process(target=_worker, args=(theirs,), daemon=True)
            process.start()
            theirs.close()
            self.links.append(mine)
            self.processes.append(process)
        for link in self.links:
            if not link.poll(30) or link.recv() != "ready":
                self.close()
                raise RuntimeError("a capacity probe process did not start")

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _phase(self, count: int) -> list[tuple[int, float, float]]:
        start = time.monotonic_ns() + START_DELAY_NS
        for link in self.links[:count]:
            link.send((start, start + int(self.phase_s * 1e9)))
        try:
            return [link.recv() for link in self.links[:count]]
        except EOFError:
            raise RuntimeError("a capacity probe process died") from None

    def read(self) -> Reading:
        """One process alone, then all of them at once (about two phases long)."""
        [(done, wall, _)] = self._phase(1)
        together = self._phase(self.workers)
        return Reading(
            solo_rate=done / wall,
            parallel_rate=sum(d / w for d, w, _ in together),
            workers=self.workers,
            cpu_share=sum(cpu / w for _, w, cpu in together) / self.workers,
        )

    def close(self) -> None:
        for link in self.links:
            try:
                link.send(None)
            except OSError:
                pass
        for process in self.processes:
            process.join(1)
            if process.is_alive():
                process.kill()
                process.join()
        for link in self.links:
            link.close()
        self.links, self.processes = [], []
