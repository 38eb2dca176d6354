"""The bound of a model: the most replies a second it could give by what it *is*.

A model should be limited by its nature (one core, one GIL, N workers, a hop between
processes), never by an avoidable cost in our code; the bound is that limit, from the
registry's traits and the workload alone, so a measurement can be read as a fraction of it:

- a wait (``io=``, or ``block=`` where the model overlaps blocking calls): each request in
  progress waits its time, so at most ``in progress / wait`` replies a second, where in
  progress is the clients in flight, capped by the model's workers (threads, processes,
  interpreters) or its cap (greenlets, tasks), and 1 for the blocking loop;
- a wait the model does not overlap (``block=`` on an event loop): one at a time;
- CPU work (``cpu=``): each core computes ``1 / cpu time`` requests a second, on as many cores
  as the model computes on (1 if it takes turns on one GIL or one thread);
- nothing to wait for or compute (echo): no bound from the model; the floor of the machine, a
  bare recvfrom/sendto loop measured beside it, is the yardstick instead (``None`` here).

CPU-bound figures share the machine with the generator, so a parallel model on two cores
reaches somewhat less than twice one core's bound; that share is measured and shown, not hidden.
"""

from __future__ import annotations

from servers import MODELS
from servers.work import Work


def in_progress(model: str, clients: int, workers: int | None = None) -> int:
    """How many requests ``model`` holds at once with ``clients`` in flight, run with
    ``--workers workers`` where that counts workers (a cap on tasks keeps its own default)."""
    known = MODELS[model]
    if known.workers_meaning == "one":
        return 1
    return min(clients, known.workers(workers if known.workers_meaning == "workers" else None))


def bound(
    model: str, work: Work, clients: int, workers: int | None, cores: int,
    gil_enabled: bool = True, cpu_seconds: float | None = None,
) -> float | None:  # fmt: skip
    """Replies a second ``model`` could give at most for ``work``; None where no model bound
    applies (echo) or no simple one does (CPU work mixed with a wait).

    ``cpu_seconds`` is one request's CPU time where ``work`` names iterations
    (``cpu=27000it``) rather than a time."""
    known = MODELS[model]
    holding = in_progress(model, clients, workers)
    seconds = cpu_seconds if work.cpu_iterations else work.cpu_seconds
    waiting = work.io_seconds + work.block_seconds
    if seconds and waiting:
        return None
    if seconds:
        return (min(holding, cores) if known.computes_in_parallel(gil_enabled) else 1) / seconds
    if not waiting:
        return None
    overlapped = all(kind in known.overlaps for kind, wait in
                     (("io", work.io_seconds), ("block", work.block_seconds)) if wait)  # fmt: skip
    return (holding if overlapped else 1) / waiting
