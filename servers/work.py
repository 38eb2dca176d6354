"""The per-request workload: ``echo``, ``cpu=2ms``, ``io=5ms``, ``block=5ms``, ``cpu=1ms,io=5ms``.

``cpu=`` is a FIXED amount of pure-Python computation: an iteration count, calibrated once in the
parent before any worker starts, so every worker (and every model) does exactly the same work.
It is never "spin until 2 ms have passed": a wall-clock spin finishes on time even while eight
threads share one GIL, and would hide the very effect this toolkit exists to show. With a fixed
count, eight threads on one GIL take eight times as long, and that is what the figures show.

``io=`` is a wait, a stand-in for waiting on a database or a disk: ``time.sleep`` in a thread
(looked up at call time, so under gevent's monkey patching it yields to other greenlets), and
``await asyncio.sleep`` in a coroutine (``wait_async``), so the event loop runs others meanwhile.

``block=`` is a blocking call that never yields: the real ``time.sleep`` even under gevent. It
stands for a library call that knows nothing of the event loop (a blocking database driver):
it holds one thread, so under asyncio or gevent it stalls every request, while under threads or
processes it only occupies one worker.

A request runs its terms in this order: the computation, the blocking call, then the wait.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

# Calibration takes many short samples for a while and keeps the fastest: interference (another
# process, a busy hyperthread sibling, a neighbour on a shared host) only ever makes a sample
# slower, and a short sample is likelier to fit in a quiet moment. On a noisy machine samples
# taken over a tenth of a second disagree far more than over half a second, and a noisy spell
# can last longer than that: a whole second of samples is what start-up can afford (the
# figures: docs/measurements.md, "Figures behind choices in the code").
CALIBRATION_SAMPLE_S = 0.001
CALIBRATION_WARMUP_S = 0.1
CALIBRATION_BUDGET_S = 0.9
# What only judges a request's own work against a cap (``--work-from-request`` with no
# ``cpu=<time>`` of the server's own) needs a fair speed, not the best one: a tenth of that.
ROUGH_BUDGET_S = 0.1

# Tracing splits the computation into at most this many pieces, timed at each boundary (two
# clock reads, about a microsecond), so a timeline can tell running from waiting within it.
MAX_CHECKPOINTS = 50
MIN_CHECKPOINT_ITERATIONS = 2000

WorkKind = Literal["echo", "cpu", "io", "block", "mixed"]
_TERM = re.compile(r"^(cpu|io|block)=(\d+(?:\.\d+)?)(it|us|ms|s)$")
_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


@dataclass(frozen=True)
class Work:
    """A parsed workload. ``cpu_iterations`` is None until calibrated when given as a time."""

    cpu_iterations: int | None = 0
    cpu_seconds: float = 0.0
    io_seconds: float = 0.0
    block_seconds: float = 0.0

    @property
    def spec(self) -> str:
        """The workload as asked for: ``cpu=2ms`` stays ``cpu=2ms``."""
        return self._format(exact=False)

    @property
    def exact_spec(self) -> str:
        """The workload as done: ``cpu=43000it``, which gives another server the same work."""
        return self._format(exact=True)

    def _format(self, exact: bool) -> str:
        terms = []
        if self.cpu_seconds and not (exact and self.cpu_iterations):
            terms.append(f"cpu={_format_seconds(self.cpu_seconds)}")
        elif self.cpu_iterations:
            terms.append(f"cpu={self.cpu_iterations}it")
        if self.block_seconds:
            terms.append(f"block={_format_seconds(self.block_seconds)}")
        if self.io_seconds:
            terms.append(f"io={_format_seconds(self.io_seconds)}")
        return ",".join(terms) or "echo"

    @property
    def kind(self) -> WorkKind:
        """What one request does: nothing but echo, compute, wait, block, or a mix of those."""
        parts: tuple[tuple[WorkKind, float], ...] = (
            ("cpu", self.cpu_iterations or self.cpu_seconds), ("io", self.io_seconds),
            ("block", self.block_seconds),
        )  # fmt: skip
        kinds = [kind for kind, amount in parts if amount]
        if not kinds:
            return "echo"
        return kinds[0] if len(kinds) == 1 else "mixed"

    def told_as(self, asked: Work) -> Work:
        """This work as done (``cpu=21554it``) told as it was asked (``cpu=2ms``): one value
        that is both, ``spec`` for a reader and ``exact_spec`` for another server."""
        if self.cpu_iterations and asked.cpu_seconds:
            return replace(self, cpu_seconds=asked.cpu_seconds)
        return self

    def to_json(self) -> str:
        """In a file: the work as done (the asked form is the calibration's to tell)."""
        return self.exact_spec

    @classmethod
    def from_json(cls, value: object) -> Work:
        """A spec read from a file; ValueError if it is none this version understands."""
        if not isinstance(value, str):
            raise ValueError(f"a work spec is a string, not {type(value).__name__}")
        return parse(value)

    @property
    def calibrated(self) -> bool:
        return self.cpu_iterations is not None

    def hold(self, measured: bool = False) -> tuple[int, list[tuple[int, int]]]:
        """The part of a request that never yields: the computation, then the blocking call.

        Unmeasured, returns ``(0, [])``. Measured (for tracing), returns the CPU nanoseconds
        this thread spent computing and checkpoints taken along it, ``(monotonic_ns, cpu_ns so
        far)``, from its start to its end: between two of them the thread either ran or waited
        (for the GIL, for a core), which is what the timeline draws. The computation never
        yields, so under gevent or asyncio no other request's CPU counts.
        """
        checkpoints: list[tuple[int, int]] = []
        if self.cpu_iterations and not measured:
            burn(self.cpu_iterations)
        elif self.cpu_iterations:
            chunk = max(MIN_CHECKPOINT_ITERATIONS, -(-self.cpu_iterations // MAX_CHECKPOINTS))
            before = time.thread_time_ns()
            checkpoints.append((time.monotonic_ns(), 0))
            left = self.cpu_iterations
            while left > 0:
                burn(min(chunk, left))
                left -= chunk
                checkpoints.append((time.monotonic_ns(), time.thread_time_ns() - before))
        if self.block_seconds:
            unyielding_sleep()(self.block_seconds)
        return (checkpoints[-1][1] if checkpoints else 0), checkpoints

    def wait(self) -> None:
        """The wait in a thread or greenlet: ``time.sleep``, looked up now (gevent patches it)."""
        if self.io_seconds:
            time.sleep(self.io_seconds)

    async def wait_async(self) -> None:
        """The wait, in a coroutine: the event loop runs other tasks until it is over."""
        if self.io_seconds:
            import asyncio  # here, not at the top: the thread and process models never need it

            await asyncio.sleep(self.io_seconds)

    def run(self) -> None:
        """Do one request's work in a thread: the computation, the blocking call, the wait."""
        self.hold()
        self.wait()

    def run_measured(self) -> tuple[int, list[tuple[int, int]]]:
        """``run``, also measuring the computation, for tracing (see ``hold``)."""
        measured = self.hold(measured=True)
        self.wait()
        return measured


ECHO = Work()  # nothing but the echo


def unyielding_sleep() -> Callable[[float], None]:
    """``time.sleep`` as the C library does it, even in a process gevent has monkey-patched.

    gevent is never imported here: if its monkey module is not loaded, nothing is patched.
    """
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("time"):
        return monkey.get_original("time", "sleep")
    return time.sleep


def parse(spec: str, most_s: float = 60.0) -> Work:
    """Parse a ``--work`` spec; raise ValueError with a message fit for a usage error. A term
    of more than ``most_s`` seconds is refused (a request's own work has caps of its own)."""
    spec = spec.strip()
    if spec in ("", "echo"):
        return Work()
    fields: dict[str, tuple[float, str]] = {}
    for term in spec.split(","):
        match = _TERM.match(term.strip())
        if not match:
            raise ValueError(
                f"bad work term {term!r}: expected echo, cpu=2ms, cpu=150000it, io=5ms, "
                "block=5ms or comma-separated cpu, io and block terms"
            )
        name, number, unit = match.group(1), float(match.group(2)), match.group(3)
        if name in fields:
            raise ValueError(f"work term {name}= given twice in {spec!r}")
        if name in ("io", "block") and unit == "it":
            raise ValueError(f"{name}= takes a time (us, ms or s), not iterations")
        if unit == "it" and number != int(number):
            raise ValueError(f"iteration count must be a whole number, not {number}")
        if number <= 0:
            raise ValueError(f"{name}= must be positive")
        if unit != "it" and number * _SECONDS[unit] > most_s:
            raise ValueError(f"{name}= is capped at {most_s:g} s per request")
        fields[name] = (number, unit)
    work = Work()
    if "cpu" in fields:
        number, unit = fields["cpu"]
        if unit == "it":
            work = replace(work, cpu_iterations=int(number))
        else:
            work = replace(work, cpu_iterations=None, cpu_seconds=number * _SECONDS[unit])
    if "io" in fields:
        number, unit = fields["io"]
        work = replace(work, io_seconds=number * _SECONDS[unit])
    if "block" in fields:
        number, unit = fields["block"]
        work = replace(work, block_seconds=number * _SECONDS[unit])
    return work


def burn(iterations: int) -> int:
    """Fixed pure-Python work: a linear congruential generator, holding the GIL throughout."""
    x = 1
    for _ in range(iterations):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
    return x


def iterations_per_second(budget_s: float = CALIBRATION_BUDGET_S) -> float:
    """This interpreter's speed at ``burn`` when undisturbed: the fastest of many samples,
    taken for ``budget_s`` after a short warm-up."""
    iterations = 100
    while True:  # grow the sample until it is long enough to time well
        start = time.perf_counter()
        burn(iterations)
        elapsed = time.perf_counter() - start
        if elapsed >= CALIBRATION_SAMPLE_S / 4:
            break
        iterations *= 2
    iterations = max(1, int(iterations * CALIBRATION_SAMPLE_S / elapsed))
    fastest = float("inf")
    warm = time.perf_counter() + CALIBRATION_WARMUP_S  # the first samples run a few % slow
    deadline = warm + budget_s
    while (start := time.perf_counter()) < deadline:
        burn(iterations)
        if start >= warm:
            fastest = min(fastest, time.perf_counter() - start)
    return iterations / fastest


def calibrate(work: Work, rate: float | None = None) -> Work:
    """Turn ``cpu=<time>`` into an iteration count (a no-op for anything else), at ``rate``
    iterations a second (None: measure it now)."""
    if work.calibrated:
        return work
    count = max(1, round(work.cpu_seconds * (rate or iterations_per_second())))
    return replace(work, cpu_iterations=count)


def format_seconds(seconds: float) -> str:
    """A duration as ``--work`` spells it: 0.005 is ``5ms``."""
    return _format_seconds(seconds)


def _format_seconds(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:g}{unit}"
    return f"{seconds / 1e-6:g}us"
