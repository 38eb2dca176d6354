"""Start and stop every model many times, half of them in the middle of a flood: does each
stop cleanly, how fast, and is anything left running?

    python -m loadgen stops [--tries 10] [--models a,b]      # make bench-stop

A benchmark, not a test (the suite's test_a_stop_during_a_flood_is_clean_and_quick is the
quick check): for each model, 2 x --tries cycles of a fresh server on port 0; in every other
cycle one socket sends as fast as it can for 0.6 s and SIGTERM comes 0.2 to 0.5 s into it, in
the others the server is idle. It prints the time from the signal to the exit, the stopped
event's counts, and any cycle without a clean stop: no event, a non-zero exit, over 2 s, or a
process of the server's tree still running afterwards.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

import psutil

from loadgen.harness.server import ServerError, ServerProcess
from servers import MODELS

FLOOD_S = 0.6
LIMIT_S = 2.0


def flood(address: tuple[str, int], until: float, sock: socket.socket) -> None:
    """Send from ``sock`` as fast as it can until ``until``; a full buffer means try again."""
    sock.setblocking(False)
    n = 0
    while time.monotonic() < until:
        try:
            sock.sendto(b"flood %d" % n, address)
            n += 1
        except BlockingIOError:
            pass


def one_stop(
    model: str, into: float, flooded: bool
) -> tuple[float | None, dict | None, int | None, int]:
    """(signal to exit in s or None, the stopped event or None, exit status, processes left)."""
    with ServerProcess([model, "--port", "0"]) as server:
        server.wait_ready()
        tree = server.tree()
        until = time.monotonic() + (FLOOD_S if flooded else 0)
        flooder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender = threading.Thread(target=flood, args=(server.address, until, flooder))
        sender.start()
        time.sleep(into)
        started = time.monotonic()
        try:
            event: dict | None = server.stop(timeout=5 * LIMIT_S)
            took: float | None = time.monotonic() - started
        except ServerError:
            event, took = None, None
        code = server.proc.returncode
        sender.join()
        flooder.close()
        left = sum(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in tree)
        return took, event, code, left


@dataclass(frozen=True)
class StopsSettings:
    models: list[str] | None = None  # None: every model
    tries: int = 10  # cycles in a flood, and as many idle, per model


def main(settings: StopsSettings) -> int:
    failures, tries = 0, settings.tries
    for model in settings.models or list(MODELS):
        if reason := MODELS[model].unavailable_reason():
            print(f"{model:16} skipped: {reason}")
            continue
        times, handled, bad = [], [], []
        for i in range(2 * tries):
            into = 0.2 + 0.3 * (i // 2) / max(1, tries - 1)
            took, event, code, left = one_stop(model, into, flooded=i % 2 == 0)
            ok = took is not None and took < LIMIT_S and code == 0 and event and not left
            if not ok:
                bad.append((i, took, event and event.get("event"), code, f"{left} left"))
            if took is not None:
                times.append(took)
            if event:
                handled.append(event.get("handled", 0))
        failures += len(bad)
        worst = f"{max(times):.2f}" if times else "-"
        print(f"{model:16} {2 * tries - len(bad)}/{2 * tries} clean stops "
              f"({tries} in a flood); signal to exit "
              f"median {sorted(times)[len(times) // 2]:.2f} s, worst {worst} s; handled "
              f"{min(handled, default=0):,}-{max(handled, default=0):,}"
              + (f"; NOT CLEAN: {bad}" if bad else ""), flush=True)  # fmt: skip
    return 0 if not failures else 1
