"""The echo-and-reply UDP server in every concurrency model, and what each model is.

MODELS is the registry: name -> where its ``serve`` function lives, what it shows, how many
workers it runs by default, and its traits: the colour and marker every figure draws it with,
the demo's one-line captions, and what it is expected to show (does it compute in parallel, which
waits does it overlap, what ``--workers`` means for it, is it the baseline). The views (figures,
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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

# Okabe & Ito's palette (2008): eight colours told apart with every common colour-vision
# deficiency; each model also has its own marker, for print and for the colours that come close.
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
             "#000000")  # fmt: skip

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
    default_workers: int | None  # None: one per available core
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
    hands_off: bool = False  # each request crosses to another process and back (two hops)
    variant_of: str | None = None  # the same server as that model, with one part swapped

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


MODELS: dict[str, Model] = {
    model.name: model
    for model in (
        Model(
            "blocking",
            "servers.blocking:serve",
            "one loop: recvfrom, handle, sendto; one request at a time",
            default_workers=1,
            colour=OKABE_ITO[0],
            marker="o",
            captions={
                "cpu": "one request at a time: the baseline",
                "io": "one {wait} wait at a time: about {most:,.0f} replies/s at most",
                "block": "one {wait} wait at a time: about {most:,.0f} replies/s at most",
            },
            workers_meaning="one",
            baseline=True,
        ),
        Model(
            "threads",
            "servers.threads:serve",
            "N threads blocking in recvfrom on one socket; they share one GIL",
            default_workers=8,
            colour=OKABE_ITO[1],
            marker="s",
            captions={
                "cpu": "{workers} threads, one GIL: do the cores get past 1?",
                "io": "{workers} threads wait at the same time",
                "block": "{workers} threads block at the same time: a blocked thread lets go "
                "of the GIL",
            },
            parallel="without_gil",
            overlaps=("io", "block"),
        ),
        Model(
            "processes",
            "servers.processes:serve",
            "N forked processes blocking in recvfrom on one inherited socket; truly parallel",
            default_workers=None,
            colour=OKABE_ITO[2],
            marker="^",
            captions={
                "cpu": "{workers} processes, a GIL each: watch the cores",
                "io": "{workers} processes wait at the same time",
                "block": "{workers} processes block at the same time",
            },
            parallel="always",
            overlaps=("io", "block"),
        ),
        Model(
            "procpool",
            "servers.procpool:serve",
            "one receive loop handing each datagram to a pool of N worker processes",
            default_workers=None,
            colour=OKABE_ITO[4],
            marker="D",
            captions={
                "cpu": "a pool of processes behind one loop: parallel, plus a hop per request",
                "io": "{workers} pool workers wait at the same time",
                "block": "{workers} pool workers block at the same time",
            },
            parallel="always",
            overlaps=("io", "block"),
            hands_off=True,
        ),
        Model(
            "subinterpreters",
            "servers.subinterpreters:serve",
            "one process, N sub-interpreters with a GIL each, on threads sharing one socket",
            default_workers=None,
            requires="concurrent.interpreters|backports.interpreters",
            install="pip install 'backports.interpreters>=0.3' (Python 3.12 and 3.13)",
            min_python=(3, 12),
            min_python_why="sub-interpreters with their own GIL, PEP 684",
            colour=OKABE_ITO[7],
            marker="P",
            captions={
                "cpu": "{workers} interpreters, a GIL each, in ONE process: watch the cores",
                "io": "{workers} interpreters wait at the same time",
                "block": "{workers} interpreters block at the same time",
            },
            parallel="always",
            overlaps=("io", "block"),
        ),
        Model(
            "gevent",
            "servers.greenlets:serve",
            "one monkey-patched process, a greenlet per datagram, at most N at once",
            default_workers=1000,
            requires="gevent",
            colour=OKABE_ITO[5],
            marker="v",
            captions={
                "cpu": "greenlets switch only while waiting: CPU work waits its turn",
                "io": "a greenlet per request: all {clients} wait at once, in one thread",
                "block": "an unpatched sleep never switches: every greenlet waits for it",
            },
            overlaps=("io",),
            workers_meaning="cap",
        ),
        Model(
            "asyncio",
            "servers.coroutines:serve",
            "one thread, one asyncio event loop, a task per datagram, at most N at once",
            default_workers=1000,
            colour=OKABE_ITO[6],
            marker="X",
            captions={
                "cpu": "one event loop: a computing task never awaits, so the rest wait",
                "io": "a task per request: all {clients} await at once, in one thread",
                "block": "a blocking call inside a coroutine stalls the loop: every task waits",
            },
            overlaps=("io",),
            workers_meaning="cap",
        ),
        Model(
            "uvloop",
            "servers.coroutines:serve_uvloop",
            "the asyncio model's server on uvloop's event loop (libuv)",
            default_workers=1000,
            requires="uvloop",
            colour=OKABE_ITO[3],
            marker="h",
            captions={
                "cpu": "a faster event loop, still one thread: CPU work waits its turn",
                "io": "the asyncio server on libuv: all {clients} await at once",
                "block": "a faster loop stalls all the same on a blocking call",
            },
            overlaps=("io",),
            workers_meaning="cap",
            variant_of="asyncio",
        ),
    )
}


def baseline() -> Model:
    """The model every ratio is taken against."""
    return next(model for model in MODELS.values() if model.baseline)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing (find_spec imports parents)
        return False


NAME_WIDTH = max(map(len, MODELS))  # for lining up progress lines and tables
