"""The files of the experiments beside the bench, typed: ``soak.json``, ``lossy.json``,
``interop.json`` (``mixed.json`` has ``analysis.mixed``).

Each file is read once, here, by ``load_soak``, ``load_lossy`` and ``load_interop``: a frozen
record per object of the file, every count checked (sent = received + lost + in flight), and
a ValueError naming the file and the first thing wrong with it when it is not what it should
be. Keys that older files lack have defaults; keys a newer writer adds are kept in ``extra``.
What the soak asks of a model (``RSS_GROWTH_LIMIT``, ``RECOVERY_FACTOR``) lives here too, so
the experiment that measures it and the view that judges it read one number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from loadgen.analysis.results import Calibration, ServerPython, read_record
from loadgen.generator.records import Record
from loadgen.generator.result import Second

RSS_GROWTH_LIMIT = 0.10  # the soak: memory may grow by at most this share after 1 s of overload
RECOVERY_FACTOR = 2.0  # the soak: recovered once the p99 is back within this many times light's


# ---- soak.json ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SoakPhase(Record):
    """One phase of a soak (light, overload, recovery): open loop at ``rate`` a second."""

    rate: float
    duration_s: float
    sent: int
    received: int
    lost: int
    in_flight: int = 0
    late: int = 0
    throughput_rps: float
    p99_us: float | None
    accounting_ok: bool = True

    @property
    def unanswered(self) -> int:
        """Timed out, or still unanswered when the drain after the phase gave up."""
        return self.lost + self.in_flight


@dataclass(frozen=True, kw_only=True)
class KernelDrops(Record):
    """What the kernel counted over the overload: drops in the server socket's receive buffer,
    and the machine-wide counters (the generator's sockets count there too)."""

    socket_drops: int
    rcvbuf_errors: int = 0
    in_errors: int = 0


@dataclass(frozen=True, kw_only=True)
class Memory(Record):
    """The server tree's resident memory during the overload, from its first second on."""

    first_second: int
    last: int
    peak: int


@dataclass(frozen=True, kw_only=True)
class SoakRow(Record):
    """One model soaked: its capacity, the three phases, the kernel's drops, its memory."""

    model: str
    work: str
    capacity_rps: float
    light: SoakPhase
    overload: SoakPhase
    recovery: SoakPhase
    recovery_series: tuple[Second, ...] = ()
    kernel: KernelDrops
    rss_bytes: Memory
    rss_growth: float | None
    recovered_in_s: int | None  # the first second of recovery back within RECOVERY_FACTOR
    stayed_up: bool
    stopped_cleanly: bool

    @property
    def clean(self) -> bool:
        return self.stayed_up and self.stopped_cleanly

    @property
    def answered_share(self) -> float | None:
        """What it answered in overload, as a share of its capacity."""
        return self.overload.throughput_rps / self.capacity_rps if self.capacity_rps else None


@dataclass(frozen=True, kw_only=True)
class SoakResults(Record):
    work: str
    calibration: dict[str, Calibration] = field(default_factory=dict)
    server_python: ServerPython | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    overload_s: float
    recover_s: float
    rows: tuple[SoakRow, ...]


# ---- lossy.json -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class LossyRow(Record):
    """One model behind one link, closed loop: what the client saw and where datagrams went."""

    model: str
    replies_rps: float
    p50_us: float | None
    p99_us: float | None
    sent: int
    received: int
    lost: int
    in_flight: int = 0
    late: int = 0
    dropped_on_the_link: int  # by the loss rule, or by the narrow link's queue
    server_handled: int | None  # None: the server did not say (it did not stop cleanly)

    @property
    def unanswered(self) -> int:
        return self.lost + self.in_flight


@dataclass(frozen=True, kw_only=True)
class LossyResults(Record):
    clients: int
    seconds: float
    work: str = "echo"
    server_python: ServerPython | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    conditions: dict[str, tuple[LossyRow, ...]]  # "5% loss", "a 256kbit link": rows per model

    def models(self) -> list[str]:
        return list(dict.fromkeys(row.model for rows in self.conditions.values() for row in rows))


# ---- interop.json ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Ratios(Record):
    """Ours / sockperf's (None where one side had no figure)."""

    replies_per_s: float | None = None
    p50_us: float | None = None
    p99_us: float | None = None


@dataclass(frozen=True, kw_only=True)
class InteropRow(Record):
    """One side (sockperf's client or ours) on one server in one shape, median of its trials.
    A sockperf run whose summary could not be parsed has no figures, only its errors."""

    server: str
    shape: str
    side: str
    command: str = ""
    ok: bool
    errors: tuple[str, ...] = ()
    replies_per_s: float | None = None
    p50_us: float | None = None
    p99_us: float | None = None
    ratio: Ratios | None = None  # ours against sockperf's same shape
    ratio_reply_every_100: Ratios | None = None  # ours against sockperf's default under-load

    @property
    def ours(self) -> bool:
        return self.side == "ours"


@dataclass(frozen=True, kw_only=True)
class ModelCheck(Record):
    """``sockperf ping-pong`` against one model started with ``--protocol sockperf``."""

    model: str
    ok: bool
    errors: tuple[str, ...] = ()
    replies_per_s: float | None = None
    p50_us: float | None = None
    p99_us: float | None = None
    server_failed: int | None = None  # None: the server did not stop cleanly


@dataclass(frozen=True, kw_only=True)
class InteropResults(Record):
    date: str | None = None
    server_python: ServerPython | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    sockperf: str | None = None  # its version line (files before it was recorded lack it)
    seconds: float
    trials: int = 1
    mps: int
    message_size: int
    placement: str | None = None  # cross, same, none (files before placement lack it)
    rows: tuple[InteropRow, ...]
    model_checks: tuple[ModelCheck, ...] = ()


# ---- reading --------------------------------------------------------------------------------


def _counted(path: Path, where: str, sent: int, received: int, unanswered: int) -> None:
    if sent != received + unanswered:
        raise ValueError(f"{path}: {where}: sent != received + lost + in_flight")


def load_soak(path: Path) -> SoakResults:
    """Read a soak.json; ValueError if it is not one, or its counts do not add up."""
    data = read_record(path, SoakResults, "soak.json")
    for i, row in enumerate(data.rows):
        for name in ("light", "overload", "recovery"):
            phase: SoakPhase = getattr(row, name)
            _counted(path, f"rows[{i}].{name}", phase.sent, phase.received, phase.unanswered)
    return data


def load_lossy(path: Path) -> LossyResults:
    """Read a lossy.json; ValueError if it is not one, or its counts do not add up."""
    data = read_record(path, LossyResults, "lossy.json")
    for condition, rows in data.conditions.items():
        for i, row in enumerate(rows):
            _counted(path, f"{condition}[{i}]", row.sent, row.received, row.unanswered)
    return data


def load_interop(path: Path) -> InteropResults:
    """Read an interop.json; ValueError if it is not one."""
    return read_record(path, InteropResults, "interop.json")
