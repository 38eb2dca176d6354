"""Counters: one row per worker of how its requests ended, readable from the main process.

``Counters(labels, shared=False)``: a row per label (worker). ``record(worker, kind)`` counts a
request (``kind`` None: answered; else its ``ErrorKind`` or ``Ignored``), ``record_failure``
one that failed, ``record_unsent`` one counted whose reply could not be sent; ``totals()`` is
the stopped event's share. ``shared=True`` keeps the rows in memory that forked workers and
sub-interpreters write too (``fd``, ``attach``).
"""

from __future__ import annotations

import mmap
import os
import tempfile
from collections.abc import Sequence
from typing import Any

from servers.protocol import ErrorKind, Ignored

# The field order of one worker's row of counters: answered, answered with an error (echo),
# ignored (sockperf: no answer, by why), failed.
KINDS = (*ErrorKind, *Ignored)
FIELDS = ("handled", *(kind.value for kind in KINDS), "failed")
_FIELD_INDEX = {None: 0, **{kind: i + 1 for i, kind in enumerate(KINDS)}}
_FAILED = len(FIELDS) - 1

Kind = ErrorKind | Ignored | None  # how a request was counted: None is answered


class Counters:
    """One row of counters per worker; each worker writes only its own row, so no lock.

    ``shared=True`` puts the rows in a shared mapping of an anonymous file (``self.fd``), so the
    counts of forked workers (which inherit the mapping) and of sub-interpreters (which map the
    same fd, see ``attach``) reach the main process, and survive a worker that was killed or died.
    """

    def __init__(self, labels: Sequence[str], shared: bool = False, fd: int | None = None):
        self.labels = list(labels)
        size = len(self.labels) * len(FIELDS)
        self.fd = fd
        if shared and fd is None:
            self.fd = _anonymous_file(size * 8)
        if self.fd is None:
            self._cells: Any = [0] * size
        else:  # MAP_SHARED: every mapping of the file, in any process or interpreter, is one
            self._cells = memoryview(mmap.mmap(self.fd, size * 8)).cast("Q")

    @classmethod
    def attach(cls, labels: Sequence[str], fd: int) -> Counters:
        """The counters another interpreter of this process made with ``shared=True``."""
        return cls(labels, fd=fd)

    def record(self, worker: int, kind: Kind) -> None:
        self._cells[worker * len(FIELDS) + _FIELD_INDEX[kind]] += 1

    def record_failure(self, worker: int, count: int = 1) -> None:
        self._cells[worker * len(FIELDS) + _FAILED] += count

    def record_unsent(self, worker: int, kind: Kind) -> None:
        """A request recorded as ``kind`` whose reply could not be sent: it failed instead."""
        self._cells[worker * len(FIELDS) + _FIELD_INDEX[kind]] -= 1
        self.record_failure(worker)

    def totals(self) -> dict[str, Any]:
        width = len(FIELDS)
        rows = {
            label: dict(zip(FIELDS, self._cells[i * width : (i + 1) * width], strict=True))
            for i, label in enumerate(self.labels)
        }
        total = {field: sum(row[field] for row in rows.values()) for field in FIELDS}
        return {
            "handled": total["handled"],
            "errors": {kind.value: total[kind.value] for kind in ErrorKind},
            "ignored": {kind.value: total[kind.value] for kind in Ignored},
            "failed": total["failed"],
            "per_worker": {label: row["handled"] for label, row in rows.items()},
        }


def _anonymous_file(size: int) -> int:
    """An fd on ``size`` zero bytes of memory that no other program can open."""
    if hasattr(os, "memfd_create"):  # Linux
        fd = os.memfd_create("udp-lab-counters")
    else:
        with tempfile.TemporaryFile() as file:  # already unlinked; the dup keeps it alive
            fd = os.dup(file.fileno())
    os.ftruncate(fd, size)
    return fd
