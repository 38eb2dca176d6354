"""The echo-and-reply UDP server in five concurrency models.

MODELS is the registry: name -> where its ``serve`` function lives, what it shows, how many
workers it runs by default. Model modules are imported only when chosen, so a missing gevent
disables one entry, not the command line.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


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
    only_one_worker: bool = False
    # A module the model cannot run without; "a|b": any one of them will do.
    requires: str | None = None
    install: str | None = None  # how to get ``requires``, for the unavailable message
    min_python: tuple[int, int] | None = None
    min_python_why: str = ""  # what that version brings, for the unavailable message

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
            only_one_worker=True,
        ),
        Model(
            "threads",
            "servers.threads:serve",
            "N threads blocking in recvfrom on one socket; they share one GIL",
            default_workers=8,
        ),
        Model(
            "processes",
            "servers.processes:serve",
            "N forked processes blocking in recvfrom on one inherited socket; truly parallel",
            default_workers=None,
        ),
        Model(
            "procpool",
            "servers.procpool:serve",
            "one receive loop handing each datagram to a pool of N worker processes",
            default_workers=None,
        ),
        Model(
            "gevent",
            "servers.greenlets:serve",
            "one monkey-patched process, a greenlet per datagram, at most N at once",
            default_workers=1000,
            requires="gevent",
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
        ),
    )
}


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing (find_spec imports parents)
        return False
