"""The echo-and-reply UDP server in seven concurrency models (asyncio and uvloop share one server).

MODELS is the registry: name -> where its ``serve`` function lives, what it shows, how many
workers it runs by default. Model modules are imported only when chosen, so a missing gevent
disables one entry, not the command line.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
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
    requires: str | None = None  # a third-party package the model cannot run without

    def workers(self, requested: int | None = None) -> int:
        if requested is not None:
            return requested
        return self.default_workers or available_cores()

    def unavailable_reason(self) -> str | None:
        if self.requires and importlib.util.find_spec(self.requires) is None:
            return f"{self.requires} is not installed"
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
            "asyncio",
            "servers.coroutines:serve",
            "one thread, one asyncio event loop, a task per datagram, at most N at once",
            default_workers=1000,
        ),
        Model(
            "uvloop",
            "servers.coroutines:serve_uvloop",
            "the asyncio model's server on uvloop's event loop (libuv)",
            default_workers=1000,
            requires="uvloop",
        ),
    )
}
