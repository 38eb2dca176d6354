"""Results on disk, typed: one results.json per bench run, the CSV beside it, and timeline.json.

Every record of a results file is a frozen dataclass (standard library) rather than a
``dict[str, Any]`` checked by key lists: no new dependency for a file that any machine with the
toolkit must be able to read; a view cannot change what it reads by accident (``frozen``);
``run.loadgen.latency_us.p99`` is an attribute that a linter and an editor follow, where the
string path ``'loadgen.latency_us.p99'`` was not; and one pair of functions, ``from_dict`` and
``to_dict``, driven by the classes' own type hints, does the JSON round trip for every record
and says where a file is malformed (``runs[3].loadgen lacks sent``): ``generator.records``,
beside the generator's own result (``generator.result.LoadResult``), which a run keeps as it
is. Keys a record does not
know (a newer writer's, a server's new event field) are kept in its ``extra`` and written
back, so a round trip loses nothing.

Schema 3 (written now) adds, beside schema 2, what the bench learnt about the machine while it
ran: ``probes``, readings of its capacity between runs (``loadgen.harness.capacity``), and per
run ``attempt``: a run judged disturbed (``analysis.expectations.disturbances``) is measured
again, and every attempt is kept; the last attempt of a point's trial is the one that counts.
A schema 2 file reads as schema 3 with no probes and every run a first attempt.

Schema 2 against schema 1 (still read; the file is converted in memory on load
and never rewritten): each run has ``machine``, the whole machine over the run's window (load
average, CPU steal, CPU used; null when /proc could not tell), and every latency summary has
``count``, the samples its percentiles were drawn from (the bench has always written it: a
schema-1 file without it gets null). Nothing else changed.

``results/latest/`` holds the newest bench; starting a new one moves the previous bench's files
to ``results/archive/<its start time>/`` first, so no result is ever overwritten.
"""

from __future__ import annotations

import csv
import datetime
import enum
import functools
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from loadgen.generator.records import Record
from loadgen.generator.result import LoadResult
from servers.work import Work
from servers.work import parse as parse_work

# Where every experiment writes unless told otherwise (--out): the newest results.
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "results" / "latest"
SCHEMA = 3
READABLE_SCHEMAS = (1, 2, 3)
TIMELINE_SCHEMA = 1  # timeline.json; files from before it had none and read the same


class RunKind(enum.StrEnum):
    """What a run measured. Written to files as its value; read back with ``RunKind(text)``."""

    MATRIX = "matrix"  # closed loop: a number of clients, each one request at a time
    LOAD_SWEEP = "load_sweep"  # open loop at a share of the capacity the matrix measured
    CORE_SWEEP = "core_sweep"  # the server pinned to fewer cores, with CPU work


# Package versions a results file from before --python recorded at the top of its metadata.
LEGACY_PACKAGE_KEYS = ("gevent", "greenlet")
# What a traced request's task was called before it covered asyncio's tasks too (a field name,
# not the model of that name).
LEGACY_TASK_KEYS = ("greenlet",)


# ---- the records -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ServerFigures(Record):
    """The server's process tree over the run's window."""

    cpu_user_s: float
    cpu_system_s: float
    cores_used: float | None
    peak_rss_bytes: int
    threads: int
    processes: int
    pid: int | None = None


@dataclass(frozen=True, kw_only=True)
class MachineWindow(Record):
    """The whole machine over the run's window, from /proc (schema 2).

    ``busy_cores``: all the CPU time used on the machine (user, nice, system and interrupts,
    from /proc/stat), in cores; what the server and the generator did not use of it was
    someone else's. ``steal_share``: the share of the window's CPU time the hypervisor gave to other
    machines. ``load_1m_*``: the 1-minute load average at each end (it lags by a minute and
    counts the bench's own runnable workers: context, not a measure of the window).
    """

    seconds: float
    cpus: int
    busy_cores: float | None
    steal_share: float | None
    load_1m_start: float
    load_1m_end: float


@dataclass(frozen=True, kw_only=True)
class Run(Record):
    """One measured point: a model, a workload, a level, a trial."""

    kind: RunKind
    model: str
    work: Work  # as done (cpu=21554it in the file), told as asked (cpu=2ms) once read
    trial: int
    cores_allowed: int
    server: ServerFigures
    loadgen: LoadResult
    generator_limited: bool
    machine: MachineWindow | None  # None: not measured (schema 1, or no /proc)
    offered_percent: float | None = None  # load_sweep: the load, in % of the capacity
    capacity_rps: float | None = None  # load_sweep: the capacity the matrix measured
    attempt: int = 0  # 1, 2...: measured again after a disturbed attempt (schema 3)

    @property
    def level(self) -> Any:
        """What varies within a kind: clients, % of capacity, or cores."""
        return {RunKind.MATRIX: self.loadgen.concurrency,
                RunKind.LOAD_SWEEP: self.offered_percent,
                RunKind.CORE_SWEEP: self.cores_allowed}[self.kind]  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class MachineProbe(Record):
    """One reading of what the machine could deliver, taken between runs (schema 3): the
    servers' pure-Python work (``burn``) in one process alone, then in ``workers`` processes
    at once, in iterations per second; ``cpu_share``: the CPU those processes got over their
    wall time (below one: they waited for a core)."""

    at_s: float  # seconds since the bench began
    kind: RunKind
    work: Work
    trial: int | None  # the round it followed (None: before the first)
    solo_rate: float
    parallel_rate: float
    workers: int
    cpu_share: float

    @property
    def capacity(self) -> float:
        """Cores' worth of that work the machine delivered with every core busy."""
        return self.parallel_rate / self.solo_rate if self.solo_rate else 0.0


@dataclass(frozen=True, kw_only=True)
class Ready(Record):
    """A server's ready event (the fields of the stdout contract; the rest in ``extra``)."""

    model: str
    host: str
    port: int
    pid: int
    workers: int | None
    work: str
    event: str = "ready"
    python: str | None = None
    gil_enabled: bool | None = None  # as the server read it after its imports (None: before)


@dataclass(frozen=True, kw_only=True)
class Stopped(Record):
    """A server's stopped event: what it handled, in total and per worker."""

    handled: int
    errors: dict[str, int]
    per_worker: dict[str, int]
    event: str = "stopped"
    model: str | None = None
    forced: int = 0
    failed: int = 0
    gil_enabled: bool | None = None  # as the server read it at its end (None: before)


@dataclass(frozen=True, kw_only=True)
class ServerRecord(Record):
    """One server the bench started: its ready and stopped events (None: it did not stop)."""

    kind: RunKind
    model: str
    work: Work
    ready: Ready
    stopped: Stopped | None


@dataclass(frozen=True, kw_only=True)
class ServerPython(Record):
    """The servers' interpreter (``python -m servers --about``), recorded since --python."""

    version: str | None = None
    implementation: str | None = None
    executable: str | None = None
    path: str | None = None
    version_info: list[int] | None = None
    gil_enabled: bool = True
    free_threaded_build: bool = False
    debug_build: bool = False
    optimized: bool | None = None  # PGO/LTO: True where the build says so, else unknown
    iterations_per_ms: float | None = None  # the calibration loop's speed, measured
    abiflags: str | None = None
    config_args: str | None = None
    switch_interval_s: float | None = None
    packages: dict[str, str | None] | None = None


@dataclass(frozen=True, kw_only=True)
class Calibration(Record):
    iterations: int
    ms: float


@dataclass(frozen=True, kw_only=True)
class Metadata(Record):
    """The machine, both interpreters, the commit and the bench settings."""

    date: str
    python: str
    gevent: str | None
    greenlet: str | None
    cpu_model: str
    cores: int | None
    os: str
    git_commit: str | None
    command: str
    settings: dict[str, Any]
    calibration: dict[str, Calibration]
    hdrhistogram: str | None = None
    cores_available: int | None = None
    git_dirty: bool = False
    server_python: ServerPython | None = None
    skipped: dict[str, str] | None = None

    @property
    def packages(self) -> dict[str, str]:
        """The versions of the packages the servers ran with (those installed, by name)."""
        recorded = self.server_python.packages if self.server_python else None
        if recorded is None:
            recorded = {name: getattr(self, name) for name in LEGACY_PACKAGE_KEYS}
        return {name: version for name, version in recorded.items() if version}

    @property
    def gil_enabled(self) -> bool:
        """Whether the servers ran with a GIL (files from before --python: they did)."""
        return self.server_python.gil_enabled if self.server_python else True

    @property
    def server_version(self) -> str:
        """The servers' Python: recorded since --python, else the generator's (they were one)."""
        recorded = self.server_python.version if self.server_python else None
        return recorded or self.python

    @property
    def iterations_per_second(self) -> float | None:
        """The calibrated speed of the CPU work (None: nothing was calibrated)."""
        for figures in self.calibration.values():
            if figures.ms > 0:
                return figures.iterations / (figures.ms / 1000)
        return None

    @functools.cached_property
    def _asked(self) -> dict[int, Work]:
        """Each calibrated iteration count, and the work it was asked as."""
        return {figures.iterations: parse_work(spec) for spec, figures in self.calibration.items()}

    def told_as_asked(self, work: Work) -> Work:
        """``work`` as done (``cpu=21554it``) told as the calibration says it was asked
        (``cpu=2ms``), for a reader; a work nothing here calibrated stays as it is."""
        asked = self._asked.get(work.cpu_iterations or 0)
        return work.told_as(asked) if asked else work


@dataclass(frozen=True, kw_only=True)
class Results(Record):
    """A whole results.json."""

    schema: int
    metadata: Metadata
    runs: tuple[Run, ...]
    servers: tuple[ServerRecord, ...] = ()
    probes: tuple[MachineProbe, ...] = ()

    def told_as_asked(self) -> Results:
        """These results with every workload told as asked as well as done: the file keeps
        the work as done, the metadata its calibration (``Metadata.told_as_asked``)."""
        tell = self.metadata.told_as_asked
        return replace(
            self,
            runs=tuple(replace(run, work=tell(run.work)) for run in self.runs),
            servers=tuple(replace(server, work=tell(server.work)) for server in self.servers),
            probes=tuple(replace(probe, work=tell(probe.work)) for probe in self.probes),
        )

    def gil_enabled(self, model: str) -> bool:
        """Whether ``model``'s servers ran with the GIL: as they said from inside (their ready
        and stopped events, read after the model's imports: an extension that has not declared
        free-threading support switches the GIL back on as it loads); where they did not say
        (files from before), as the interpreter answered ``--about``."""
        said = [event.gil_enabled for server in self.servers if server.model == model
                for event in (server.ready, server.stopped)
                if event is not None and event.gil_enabled is not None]  # fmt: skip
        return any(said) if said else self.metadata.gil_enabled

    def runs_of(self, kind: RunKind) -> list[Run]:
        """The runs of ``kind`` that count: of each trial, its last attempt."""
        return [run for run in self.counted if run.kind == kind]

    @functools.cached_property
    def counted(self) -> tuple[Run, ...]:
        """Every run that counts: of each trial of a point, the last attempt."""
        last: dict[tuple, Run] = {}
        for run in self.runs:
            key = (run.kind, run.model, run.work, run.level, run.trial)
            if key not in last or run.attempt >= last[key].attempt:
                last[key] = run
        return tuple(last.values())

    @property
    def superseded(self) -> tuple[Run, ...]:
        """The attempts measured again (disturbed), in order."""
        counted = {id(run) for run in self.counted}
        return tuple(run for run in self.runs if id(run) not in counted)


# ---- reading ---------------------------------------------------------------------------------


def upgrade_schema_1(data: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 results object as schema 2 (a new object; ``data`` is left as it was): every
    run gets ``machine`` null (not measured), every latency summary without ``count`` gets it
    null. Anything malformed is left for ``Results.from_dict`` to name."""

    def latency(summary: Any) -> Any:
        return {"count": None, **summary} if isinstance(summary, dict) else summary

    def run(old: Any) -> Any:
        if not isinstance(old, dict):
            return old
        new = {**old, "machine": old.get("machine")}
        loadgen = old.get("loadgen")
        if isinstance(loadgen, dict):
            new["loadgen"] = {**loadgen, "latency_us": latency(loadgen.get("latency_us"))}
            if loadgen.get("latency_uncorrected_us") is not None:
                new["loadgen"]["latency_uncorrected_us"] = latency(
                    loadgen["latency_uncorrected_us"]
                )
            generator = loadgen.get("generator")
            if isinstance(generator, dict) and generator.get("lag_us") is not None:
                new["loadgen"]["generator"] = {**generator, "lag_us": latency(generator["lag_us"])}
        return new

    runs = data.get("runs")
    return {**data, "schema": 2, "runs": [run(r) for r in runs] if isinstance(runs, list) else runs}


def parse(data: Any) -> Results:
    """Parsed JSON as Results (schema 1 converted); ValueError saying what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    schema = data.get("schema")
    if schema not in READABLE_SCHEMAS:
        raise ValueError(f"schema is {schema!r}; this version reads schemas "
                         f"{', '.join(map(str, READABLE_SCHEMAS))}")  # fmt: skip
    if schema == 1:
        data = upgrade_schema_1(data)
    data = {**data, "schema": SCHEMA}  # schema 2 is schema 3 with no probes and first attempts
    results = Results.from_dict(data, "results").told_as_asked()
    for i, run in enumerate(results.runs):
        counts = run.loadgen
        if counts.sent != counts.received + counts.lost + counts.in_flight:
            raise ValueError(f"results.runs[{i}]: sent != received + lost + in_flight")
    return results


def read_json(path: Path) -> Any:
    """A JSON file's value; ValueError naming the file when it cannot be read or parsed."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read {path}: {error}") from None


R = TypeVar("R", bound=Record)


def read_record(path: Path, cls: type[R], name: str) -> R:
    """A JSON file read as ``cls`` (``name``: what the file is, "mixed.json"); ValueError
    naming the file and the first thing wrong with it."""
    data = read_json(path)
    try:
        return cls.from_dict(data, name.removesuffix(".json"))
    except ValueError as error:
        raise ValueError(f"{path} is not a {name} this version can read: {error}") from None


def load(path: Path) -> Results:
    """Read a results.json (schema 1 or 2), checking it is one this code understands."""
    data = read_json(path)
    try:
        return parse(data)
    except ValueError as error:
        raise ValueError(f"{path} is not a valid results file: {error}") from None


@dataclass(frozen=True, kw_only=True)
class TracedRequest(Record):
    """One request a traced server handled, in CLOCK_MONOTONIC nanoseconds: when recvfrom
    returned it, when its work started and ended, the CPU its thread spent on it, checkpoints
    ``(time, CPU so far)`` along its computation, and the worker (and task) that did it."""

    worker: str
    received_ns: int
    start_ns: int
    end_ns: int
    cpu_ns: int
    checkpoints: list[list[int]] = field(default_factory=list)
    task: int | None = None  # the greenlet or asyncio task, where requests share a thread
    pid: int | None = None  # the process that handled it
    source_port: int | None = None  # the client's port (traces from before it: None)

    @property
    def lane(self) -> int | None:
        """The task that ran it (traces from before ``task`` called it ``greenlet``)."""
        if self.task is not None:
            return self.task
        return next((self.extra[key] for key in LEGACY_TASK_KEYS if key in self.extra), None)

    @property
    def core_share(self) -> float:
        """Its CPU time over the wall time of its work."""
        return min(1.0, self.cpu_ns / max(1, self.end_ns - self.start_ns))


@dataclass(frozen=True, kw_only=True)
class Trace(Record):
    """One model's traced burst with one workload: the median burst's requests and when it
    was sent, and how long every burst took (``bursts_ms``)."""

    burst_ns: int
    requests: tuple[TracedRequest, ...]
    bursts_ms: tuple[float, ...] = ()


@dataclass(frozen=True, kw_only=True)
class GilTrace(Record):
    """One model's burst traced with the GIL sampler running (3.15+, ``harness.gil``): its
    requests, and per worker, when its thread held a GIL (CLOCK_MONOTONIC ns)."""

    trace: Trace
    held: dict[str, list[list[int]]]

    def overlap_ns(self) -> int:
        """How long two or more workers held a GIL at the same time: one GIL (threads) allows
        none; sub-interpreters each hold their own."""
        edges = sorted((t, +1 if i == 0 else -1) for spans in self.held.values()
                       for span in spans for i, t in enumerate(span))  # fmt: skip
        total, level, since = 0, 0, 0
        for t, step in edges:
            if level >= 2:
                total += t - since
            level, since = level + step, t
        return total

    def handovers(self) -> int:
        """How many times the GIL went from one worker to another."""
        order = sorted((span[0], worker) for worker, spans in self.held.items() for span in spans)
        return sum(a[1] != b[1] for a, b in zip(order, order[1:], strict=False))


@dataclass(frozen=True, kw_only=True)
class Timeline(Record):
    """A whole timeline.json: per workload spec, per model, its traced burst."""

    burst: int  # requests sent at once
    traces: dict[str, dict[str, Trace]]
    repeat: int = 1  # bursts per model and workload; the median one is kept
    cores: int | None = None
    gil_switch_interval_s: float = 0.005  # the servers' own
    calibration: dict[str, str] = field(default_factory=dict)
    metadata: Metadata | None = None
    schema: int = TIMELINE_SCHEMA
    gil: dict[str, dict[str, GilTrace]] = field(default_factory=dict)  # work -> model (3.15+)
    gil_missing: str | None = None  # why the GIL was not sampled

    def work(self, spec: str) -> Work:
        """The workload a trace is keyed by (as asked: ``cpu=20ms``), told as done too
        (``cpu=215540it``, from ``calibration``)."""
        asked = parse_work(spec)
        return parse_work(self.calibration.get(spec, spec)).told_as(asked)


def load_timeline(path: Path) -> Timeline:
    """Read a timeline.json (schema 1, or none from before it). ValueError if it is not a
    timeline this version can read."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a timeline.json: not JSON ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("traces"), dict):
        raise ValueError(f"{path} is not a timeline.json: no traces")
    if data.get("schema", TIMELINE_SCHEMA) != TIMELINE_SCHEMA:
        raise ValueError(f"{path} is a timeline.json of schema {data['schema']!r}; this "
                         f"version reads schema {TIMELINE_SCHEMA}")  # fmt: skip
    try:
        return Timeline.from_dict(data, "timeline")
    except ValueError as error:
        raise ValueError(f"{path} is not a timeline.json this version can read: {error}") from None


# ---- writing ---------------------------------------------------------------------------------


def write_json_atomically(path: Path, data: Any) -> None:
    """Write to a temporary file beside ``path``, then rename: never a half-written file."""
    write_text_atomically(path, json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n")


def write_text_atomically(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path``, then rename: an interrupted write (Ctrl-C)
    leaves the earlier file whole and no temporary one behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False,
        encoding="utf-8",
    ) as handle:  # fmt: skip
        try:
            handle.write(text)
        except BaseException:
            handle.close()
            os.unlink(handle.name)
            raise
    os.chmod(handle.name, 0o644)  # a temporary file is private; a result is for reading
    os.replace(handle.name, path)


def archive(folder: Path) -> Path | None:
    """Move an earlier bench's files out of ``folder`` (``results/latest``) into
    ``archive/<its start time>`` beside it (``results/archive/...``), so a new bench starts
    afresh and loses nothing; return where they went (None: no earlier bench there). Only
    files move: a folder inside it stays where it is."""
    if not (folder / "results.json").is_file():
        return None
    began = _started_at(folder) or datetime.datetime.fromtimestamp(folder.stat().st_mtime)
    name = began.strftime("%Y-%m-%dT%H%M%S")
    target = folder.parent / "archive" / name
    suffix = 1
    while target.exists():
        target = folder.parent / "archive" / f"{name}-{suffix}"
        suffix += 1
    target.mkdir(parents=True)
    for path in folder.iterdir():
        if path.is_file():
            shutil.move(str(path), str(target / path.name))
    return target


def _started_at(folder: Path) -> datetime.datetime | None:
    try:
        data = json.loads((folder / "results.json").read_text(encoding="utf-8"))
        return datetime.datetime.fromisoformat(data["metadata"]["date"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class ResultsFile:
    """The bench's results.json (and results.csv), rewritten whole after every finished run."""

    def __init__(self, folder: Path, metadata: Metadata):
        self.folder = folder
        self.path = folder / "results.json"
        self.results = Results(schema=SCHEMA, metadata=metadata, runs=(), servers=())
        # Each record turned into plain data once, not at every save.
        self._plain: dict[str, Any] = {"schema": SCHEMA, "metadata": metadata.to_dict(),
                                       "runs": [], "servers": [], "probes": []}  # fmt: skip
        self.save()

    def add_run(self, run: Run) -> None:
        self.results = replace(self.results, runs=(*self.results.runs, run))
        self._plain["runs"].append(run.to_dict())
        self.save()

    def add_probe(self, probe: MachineProbe) -> None:
        self.results = replace(self.results, probes=(*self.results.probes, probe))
        self._plain["probes"].append(probe.to_dict())
        self.save()

    def add_server(self, server: ServerRecord) -> None:
        self.results = replace(self.results, servers=(*self.results.servers, server))
        self._plain["servers"].append(server.to_dict())
        self.save()

    def save(self) -> None:
        write_json_atomically(self.path, self._plain)
        write_csv(self.folder / "results.csv", self.results.runs)


CSV_COLUMNS = (
    "kind", "model", "work", "trial", "concurrency", "rate", "cores_allowed", "sent",
    "received", "lost", "throughput_rps", "p50_us", "p99_us", "server_cores",
    "generator_cores", "generator_limited", "latency_samples", "machine_busy_cores",
    "machine_steal_share", "machine_load_1m", "attempt",
)  # fmt: skip


def csv_row(run: Run) -> dict[str, Any]:
    loadgen, machine = run.loadgen, run.machine
    return {
        "kind": run.kind,
        "model": run.model,
        "work": run.work.exact_spec,
        "trial": run.trial,
        "concurrency": loadgen.concurrency,
        "rate": loadgen.rate,
        "cores_allowed": run.cores_allowed,
        "sent": loadgen.sent,
        "received": loadgen.received,
        "lost": loadgen.lost,
        "throughput_rps": loadgen.throughput_rps,
        "p50_us": loadgen.latency_us.p50,
        "p99_us": loadgen.latency_us.p99,
        "server_cores": run.server.cores_used,
        "generator_cores": loadgen.generator.cpu_cores,
        "generator_limited": run.generator_limited,
        "latency_samples": loadgen.latency_us.count,
        "machine_busy_cores": machine.busy_cores if machine else None,
        "machine_steal_share": machine.steal_share if machine else None,
        "machine_load_1m": machine.load_1m_end if machine else None,
        "attempt": run.attempt,
    }


def write_csv(path: Path, runs: tuple[Run, ...] | list[Run]) -> None:
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False, newline=""
    ) as handle:
        writer = csv.DictWriter(handle, CSV_COLUMNS)
        writer.writeheader()
        for run in runs:
            writer.writerow(csv_row(run))
    os.chmod(handle.name, 0o644)
    os.replace(handle.name, path)
