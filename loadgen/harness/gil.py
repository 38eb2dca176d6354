"""Which thread held the GIL, and when: CPython 3.15's sampling profiler, beside a server.

``python -m profiling.sampling attach --gecko`` (3.15) reads a running interpreter's memory
from outside, thousands of times a second, and marks for each thread when it held its
interpreter's GIL ("Has GIL", in the Firefox Profiler's format). ``GilSampler`` runs it on the
server's own interpreter, attached to the server's process, for as long as its ``with`` block,
and gives back, per thread (its native id, as the server's trace records name it), the
intervals it held a GIL, on CLOCK_MONOTONIC, the trace's clock. Sub-interpreters each have a
GIL of their own, so their intervals may overlap; threads of one interpreter share one.

A server in the Debian sid chroot (``harness.sid``) is sampled from inside its own mount
namespace and root (``nsenter``): the profiler finds the interpreter by the paths the server
sees. The sampler itself takes CPU: on two cores it slows what it watches, so it is run on
bursts of its own, never on the ones measured without it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

RATE = "10khz"  # a sample every 0.1 ms: a 20 ms request crosses about 200 of them
SETTLE_S = 1.0  # from starting the sampler until it samples (its start-up took up to ~0.6 s)
STOP_TIMEOUT_S = 15.0  # writing the profile takes a second or two after the stop
FIRST = (3, 15)


class GilError(Exception):
    """The sampler could not run or gave nothing readable: one line for the user."""


def why_not(version_info: list[int] | tuple[int, ...]) -> str | None:
    """Why the GIL cannot be sampled for a server on that Python (None: it can). A sampler
    that cannot attach, say to a chrooted server without root, fails as it starts
    (``GilError``), and the timeline says so."""
    if tuple(version_info[:2]) < FIRST:
        return (f"drawing the GIL needs Python 3.15's profiling.sampling; the servers ran "
                f"{'.'.join(map(str, version_info))}")  # fmt: skip
    return None


def _chrooted(pid: int) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/root") != "/"
    except OSError:
        return False


class GilSampler:
    """``with GilSampler(pid, python):`` samples process ``pid`` with ``python`` (the server's
    interpreter, as the server sees it); ``held`` afterwards: native thread id -> intervals
    ``[start_ns, end_ns]`` it held a GIL."""

    def __init__(self, pid: int, python: str) -> None:
        self.pid, self.python = pid, python
        self.held: dict[int, list[list[int]]] = {}
        self._folder = Path(tempfile.mkdtemp(prefix="gil-", dir="/tmp"))  # seen in a chroot too
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> GilSampler:
        output = self._folder / "profile.json"
        beside = (["nsenter", f"--target={self.pid}", "--mount", "--root", "--wd=/tmp"]
                  if _chrooted(self.pid) else [])  # fmt: skip
        command = [
            *beside,
            self.python,
            "-m",
            "profiling.sampling",
            "attach",
            "--all-threads",
            "--sampling-rate",
            RATE,
            "--gecko",
            "-o",
            str(output),
            str(self.pid),
        ]
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=_interruptible,
        )
        time.sleep(SETTLE_S)
        if self._process.poll() is not None:
            raise GilError(f"the sampler ended at once: {self._said()}")
        return self

    def __exit__(self, *exc: object) -> None:
        process = self._process
        try:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGINT)  # it stops sampling and writes the profile
                process.wait(STOP_TIMEOUT_S)
            if exc[0] is None:
                profile = self._folder / "profile.json"
                if not profile.exists():
                    raise GilError(f"the sampler wrote no profile: {self._said()}")
                self.held = held_intervals(json.loads(profile.read_text()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise GilError("the sampler did not stop") from None
        finally:
            if process is not None and process.stdout is not None:
                process.stdout.close()
            shutil.rmtree(self._folder, ignore_errors=True)

    def _said(self) -> str:
        out = self._process.stdout.read().decode("utf-8", "replace") if self._process else ""
        return (out.strip().splitlines() or ["no message"])[-1]


def _interruptible() -> None:
    """In the sampler's process, before it starts: SIGINT as Python expects it. A program
    started in the background by a shell inherits SIGINT ignored, and the sampler, which
    stops on SIGINT, would then never stop."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def held_intervals(gecko: dict[str, Any]) -> dict[int, list[list[int]]]:
    """From a Gecko profile: per thread (native id), the intervals it held a GIL, in
    CLOCK_MONOTONIC nanoseconds (the profile's times are ms after ``meta.startTime``, itself
    CLOCK_MONOTONIC ms)."""
    start_ms = float(gecko["meta"]["startTime"])
    shared = gecko.get("shared", {}).get("stringArray")
    held: dict[int, list[list[int]]] = {}
    for thread in gecko["threads"]:
        names, markers = shared or thread.get("stringArray", []), thread["markers"]
        intervals = [
            [round((start_ms + begin) * 1e6), round((start_ms + end) * 1e6)]
            for name, begin, end in zip(
                markers["name"], markers["startTime"], markers["endTime"], strict=True
            )  # fmt: skip
            if names[name] == "Has GIL" and end is not None
        ]
        held[int(thread["tid"])] = sorted(intervals)
    return held
