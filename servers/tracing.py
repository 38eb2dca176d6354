"""Per-request tracing (``--trace FILE``): who handled each request, when, and with how much CPU.

For every answered request: the worker (label, process id, OS thread id, task if any), and
four instants on the system-wide monotonic clock, so processes can be compared: received (the
recvfrom returned), work start, work end, reply sent (handed to sendto); plus the CPU time the
worker's thread spent on the request's computation (``time.thread_time``: a thread waiting for
the GIL, or a greenlet sleeping, does not accumulate it). CPU over wall time is the request's
share of a core. ``checkpoints`` break the computation into pieces, ``[monotonic_ns, cpu_ns so
far]`` at each boundary, so a reader can see when within the request its thread ran and when it
waited.

``source_port`` is the client's (its socket's port): with a worker per socket chosen by the
kernel (SO_REUSEPORT), it says which clients landed on which worker.

``task`` tells apart requests that share one thread: a number for the greenlet (gevent,
greenlet) or the asyncio task (asyncio, uvloop) that ran it, unique within the process; None
elsewhere. Files
written before it was generalised name it ``greenlet``; ``loadgen.analysis.results.TracedRequest``
reads either.

It costs little: records are appended to a list in memory and written once, at stop. Workers
that keep their records where the main interpreter cannot see them (a forked process; a
sub-interpreter, which shares the pid) write their own part, ``FILE.part-<pid>-<thread>``,
when their loop ends (``Server.flush_trace``); the main interpreter merges the parts.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any


class Stamped(bytes):
    """A datagram that remembers when recvfrom returned it, and the port it came from (only
    made when tracing)."""

    received_ns: int
    source_port: int | None


def stamp(datagram: bytes, address: Any = None) -> Stamped:
    stamped = Stamped(datagram)
    stamped.received_ns = time.monotonic_ns()
    stamped.source_port = address[1] if address else None
    return stamped


def timing(
    datagram: bytes, start_ns: int, cpu_ns: int, checkpoints: list[tuple[int, int]]
) -> dict[str, Any]:
    """Where and when a request was handled, taken as its work ends."""
    return {
        "pid": os.getpid(),
        "thread": threading.get_native_id(),
        "task": current_task(),
        "received_ns": getattr(datagram, "received_ns", start_ns),
        "source_port": getattr(datagram, "source_port", None),
        "start_ns": start_ns,
        "end_ns": time.monotonic_ns(),
        "cpu_ns": cpu_ns,
        "checkpoints": checkpoints,
    }


def current_task() -> int | None:
    """A number for the greenlet or asyncio task running this request, if any: unique within
    the process, unlike ``id()``, which a new task may take over from a finished one.

    Neither library is imported here: each is looked for only if the process loaded it. A
    greenlet with a parent is not its thread's main one: requests take turns on that thread.
    """
    greenlet = sys.modules.get("greenlet")
    if greenlet is not None and greenlet.getcurrent().parent is not None:
        return _serial(greenlet.getcurrent())
    asyncio = sys.modules.get("asyncio")
    if asyncio is not None:
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no event loop running in this thread
            return None
        return _serial(task) if task is not None else None
    return None


_serials: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
_next_serial = itertools.count(1)


def _serial(task: Any) -> int:
    """The task's number: given at its first record, forgotten with the task."""
    serial = _serials.get(task)
    if serial is None:
        serial = _serials[task] = next(_next_serial)
    return serial


class Trace:
    """The records of one process; ``write`` merges the parts forked workers left."""

    def __init__(self, path: Path, header: dict[str, Any], merges: bool = True):
        """``merges`` False: a sub-interpreter's copy, which writes a part instead."""
        self.path = Path(path)
        self.header = header
        self.records: list[dict[str, Any]] = []
        self.main_pid = os.getpid()
        self.merges = merges

    def writes_part(self) -> bool:
        """A copy in a forked worker (another pid) or in a sub-interpreter (``merges`` off)."""
        return os.getpid() != self.main_pid or not self.merges

    def record(self, worker: str, timing: dict[str, Any], sent_ns: int) -> None:
        self.records.append({"worker": worker, **timing, "sent_ns": sent_ns})

    def forget(self, received_ns: int | None) -> None:
        """Take back the newest record of the request received at ``received_ns``: its reply
        could not be sent after all, so it is failed, not answered."""
        for i in range(len(self.records) - 1, -1, -1):
            if self.records[i]["received_ns"] == received_ns:
                del self.records[i]
                return

    def flush_part(self) -> None:
        """In a worker: leave its records beside the trace file, named so no two collide."""
        if self.writes_part():
            name = f"{self.path.name}.part-{os.getpid()}-{threading.get_native_id()}"
            part = self.path.with_name(name)
            part.write_text(json.dumps(self.records))

    def write(self) -> None:
        """In the main process, at stop: every record, sorted by receive time, atomically."""
        records = list(self.records)
        for part in self.path.parent.glob(f"{self.path.name}.part-*"):
            records += json.loads(part.read_text())
            part.unlink()
        records.sort(key=lambda r: r["received_ns"])
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        temporary.write_text(json.dumps({**self.header, "requests": records}))
        os.replace(temporary, self.path)
