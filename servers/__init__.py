"""The echo-and-reply UDP server in every concurrency model, and what each model is.

MODELS is the registry, read from the table in ``models.toml``: name -> where its ``serve``
function lives, what it shows, how many workers it runs by default, and its traits: the colour
and marker every figure draws it with, the demo's one-line captions, and what it is expected to
show (does it compute in parallel, which waits does it overlap, what ``--workers`` means for it,
is it the baseline). The views (figures,
demo, timeline, report) read these traits, so adding a model touches ``servers/`` only.

Model modules are imported only when chosen, so a missing gevent disables one entry, not the
command line. This package imports nothing beyond the standard library: ``python -m servers
--about`` must run under any interpreter a user brings.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import platform
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

# What a model's requests do with CPU work on several cores: "always" (separate GILs or
# processes), "without_gil" (threads: only on a free-threaded build), "never" (one thread).
Parallel = Literal["always", "without_gil", "never"]
# What --workers means: exactly one loop, N workers (threads, processes, interpreters), or a
# cap on requests in progress (a greenlet or a task per request).
WorkersMeaning = Literal["one", "workers", "cap"]
# The kinds of waiting a model can overlap: "io" (a wait the model yields on: time.sleep under
# threads and gevent, await asyncio.sleep) and "block" (a call that blocks its thread).
WAIT_KINDS = ("io", "block")


def available_cores() -> int:
    """Cores this process may run on (respects taskset/sched_setaffinity, unlike cpu_count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass(frozen=True)
class Model:
    name: str
    target: str  # "module:function"
    summary: str
    default_workers: int | None = None  # None: one per available core
    # A module the model cannot run without; "a|b": any one of them will do.
    requires: str | None = None
    install: str | None = None  # how to get ``requires``, for the unavailable message
    min_python: tuple[int, int] | None = None
    min_python_why: str = ""  # what that version brings, for the unavailable message
    # -- traits: what the views draw and what the report expects --------------------------
    colour: str = "#777777"
    marker: str = "x"
    # The demo's caption per workload kind ("cpu", "io", "block"); may use {workers},
    # {clients}, {wait} (the wait's length, "5ms") and {most} (one wait's replies/s).
    captions: dict[str, str] = field(default_factory=dict)
    parallel: Parallel = "never"
    overlaps: tuple[str, ...] = ()  # a subset of WAIT_KINDS
    workers_meaning: WorkersMeaning = "workers"
    baseline: bool = False  # the one every ratio is taken against
    forks: bool = False  # its workers are processes of their own (else: one process)
    hands_off: bool = False  # each request crosses to another worker and back (two hops)
    variant_of: str | None = None  # the same server as that model, with one part swapped
    # Its socket is bound with SO_REUSEPORT, so its workers bind sockets of their own beside
    # it on the same port, and the kernel picks one per datagram by a hash of the sender.
    reuse_port: bool = False

    @property
    def only_one_worker(self) -> bool:
        return self.workers_meaning == "one"

    def computes_in_parallel(self, gil_enabled: bool = True) -> bool:
        """Whether CPU work runs on several cores at once, on an interpreter with or without
        the GIL (a free-threaded build runs threads in parallel; nothing else changes)."""
        return self.parallel == "always" or (self.parallel == "without_gil" and not gil_enabled)

    def workers(self, requested: int | None = None) -> int:
        if requested is not None:
            return requested
        return self.default_workers or available_cores()

    def unavailable_reason(self) -> str | None:
        """Why this model cannot run on this Python, in one line; None when it can."""
        if self.min_python and sys.version_info[:2] < self.min_python:
            needs = ".".join(map(str, self.min_python))
            why = f" ({self.min_python_why})" if self.min_python_why else ""
            return f"needs Python {needs}+{why}; this is {platform.python_version()}"
        if self.requires and not any(map(_importable, self.requires.split("|"))):
            install = f"; {self.install}" if self.install else ""
            return f"{' or '.join(self.requires.split('|'))} is not installed{install}"
        return None

    def load(self) -> Callable[[Any], None]:
        module_name, _, function = self.target.partition(":")
        return getattr(importlib.import_module(module_name), function)


def _read_registry() -> dict[str, Model]:
    """models.toml, beside this file: one table per model, in the order every view uses."""
    with open(Path(__file__).with_name("models.toml"), "rb") as file:
        table = tomllib.load(file)
    tuples = ("overlaps", "min_python")  # a frozen Model holds tuples, TOML gives lists
    return {
        name: Model(
            name=name, **{key: tuple(v) if key in tuples else v for key, v in entry.items()}
        )
        for name, entry in table.items()
    }


MODELS: dict[str, Model] = _read_registry()


def baseline() -> Model:
    """The model every ratio is taken against."""
    return next(model for model in MODELS.values() if model.baseline)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing (find_spec imports parents)
        return False


NAME_WIDTH = max(map(len, MODELS))  # for lining up progress lines and tables
