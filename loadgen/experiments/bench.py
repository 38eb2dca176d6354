"""python -m loadgen bench: every model through the same workloads, into results/latest/.

The matrix: models x workloads x closed-loop concurrency levels x trials. For each workload,
one fresh server per model is started on port 0 (the same --workers for every model with
workers; a model whose --workers caps the requests in progress, a greenlet or task each, keeps
its own cap) and they all stay up while the load visits them in turn: trial by trial, level by
level, model after model. This machine's speed drifts within seconds, so models measured
minutes apart would be compared on different machines; idle servers block in recvfrom (or wait
in their event loop) and cost nothing.

Each point is measured once its rate has settled (the engine's warm-up rule) and over a window
that holds at least ``min_replies`` replies. A run the machine disturbed (busy, or doing the CPU
work well below its calibrated speed: ``analysis.expectations.disturbances``) is measured again,
``retries`` times at most, every attempt kept. Between rounds a capacity probe reads what the
machine could deliver then (``harness.capacity``), so that a speed-up can be judged against it.

On the same servers, the load sweep: latency against offered load (open loop at fractions of
the capacity the matrix just measured). Then throughput against cores (servers pinned to 1..K
cores with the CPU workload), and a traced burst per model for the timeline (timeline.json).
Every run is written to disk as it finishes, so Ctrl-C keeps what was done. The bench writes
JSON only; ``loadgen.views`` draws the figures and the report from it.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from loadgen.analysis.expectations import EXPECTED, disturbances, efficiency
from loadgen.analysis.results import (
    DEFAULT_OUT,
    LoadResult,
    MachineProbe,
    MachineWindow,
    Metadata,
    Ready,
    ResultsFile,
    Run,
    RunKind,
    ServerFigures,
    ServerRecord,
    Stopped,
    archive,
)
from loadgen.experiments.timeline import DEFAULT_WORKS as TIMELINE_WORKS
from loadgen.experiments.timeline import TimelineSettings, record_timeline
from loadgen.generator import engine, runner
from loadgen.generator.cluster import DaskRunner
from loadgen.harness.calibration import Calibration, calibrate_works
from loadgen.harness.capacity import Probe
from loadgen.harness.machine import MachineSample, machine_sample, machine_window, metadata
from loadgen.harness.pythons import runnable
from loadgen.harness.server import Sample, ServerProcess, cpu_window, start_model
from servers import MODELS, NAME_WIDTH, available_cores
from servers.work import Work, parse

# Two points in a row disturbed through every retry: the machine is busy for longer than a
# retry waits, and measuring each point three times would only triple the bench's length.
STUCK_AFTER = 2


def parse_all(*specs: str) -> list[Work]:
    return [parse(spec) for spec in specs]


@dataclass
class BenchSettings:
    models: list[str] = field(default_factory=lambda: list(MODELS))
    works: list[Work] = field(
        default_factory=lambda: parse_all("echo", "cpu=2ms", "io=5ms", "block=5ms")
    )
    concurrency: list[int] = field(default_factory=lambda: [1, 4, 16, 64])
    trials: int = 3  # rounds: every model's point once per round, in turns
    duration: float = 0.6
    warmup: float = 0.15  # the least warm-up; it ends once the rate settles ...
    warmup_max: float = 1.0  # ... or at this at the latest
    # A window holds at least this many replies (a rate to about 1%: 0.6 s of io=5ms at one
    # client is 120), unless that would take longer than duration_max ...
    min_replies: int = 100
    duration_max: float = 3.0
    retries: int = EXPECTED.retries  # a disturbed run measured again, at most this often
    probe: bool = True  # read the machine's capacity between rounds
    probe_phase: float = 0.1  # seconds of each of a reading's two phases
    workers: int = 8
    load_sweep: list[int] = field(default_factory=lambda: [25, 50, 75, 90, 100, 120])
    # block=5ms tells nothing new about queueing that io=5ms does not: left out of the sweep
    sweep_works: list[Work] = field(default_factory=lambda: parse_all("echo", "cpu=2ms", "io=5ms"))
    sweep_clients: int = 32
    core_sweep: bool = True
    core_work: Work = parse("cpu=2ms")
    core_concurrency: int = 16
    core_trials: int | None = None  # rounds of the core sweep (None: trials)
    timeline: bool = True  # trace one burst per model: who runs when
    timeline_works: list[Work] = field(default_factory=lambda: list(TIMELINE_WORKS))
    timeline_repeat: int = 5  # bursts per model and work, the median one kept
    timeout: float = 1.0  # no reply by then is a loss; 64 queued cpu=2ms requests stay under it
    out: Path = DEFAULT_OUT  # the folder the results go into (see results_folder)
    python: str = sys.executable  # the servers' interpreter (the generator stays on this one)
    # tcp://SCHEDULER:8786: the generator's parts on that Dask cluster's workers, one each, as
    # many as a run has clients (up to the workers); the servers then listen on every address
    dask: str | None = None


Preset = Literal["quick", "default", "full"]
PRESETS: dict[Preset, BenchSettings] = {
    # quick: every workload and figure, fewer points rather than shorter ones (16 clients,
    # three short rounds, each model in turn, so a drift hits them all alike; one load sweep),
    # the timeline's two lessons (docs/bench.md says how long it takes)
    "quick": BenchSettings(
        works=parse_all("echo", "cpu=2ms", "io=5ms"), concurrency=[16], trials=3, duration=0.2,
        warmup=0.05, warmup_max=0.3, min_replies=40, duration_max=0.6, load_sweep=[50, 120],
        sweep_works=parse_all("cpu=2ms"), core_trials=1, probe_phase=0.06,
        timeline_works=parse_all("cpu=20ms", "io=5ms"), timeline_repeat=3,
    ),
    "default": BenchSettings(),
    "full": BenchSettings(
        concurrency=[1, 2, 4, 8, 16, 32, 64, 128], trials=5, duration=2.0, warmup=0.5,
        load_sweep=[10, 25, 50, 75, 90, 100, 110, 120, 150],
    ),
}  # fmt: skip


def measure(
    server: ServerProcess, loadgen_settings: engine.Settings, kind: RunKind, trial: int,
    cores: list[int] | None, dask: DaskRunner | None = None, **sweep: float,
) -> Run:  # fmt: skip
    """One run against an already started server, its server-side figures and the whole
    machine's over the window (``sweep``: a load sweep's offered_percent and capacity_rps);
    with ``dask``, the load comes from its workers, the window sampled at its planned edges."""
    window: dict[str, tuple[Sample, MachineSample | None]] = {}

    def sample(edge: str) -> None:
        window[edge] = (server.sample(), machine_sample())

    if dask:
        procs = min(loadgen_settings.concurrency, len(dask.workers()))
        loaded = dask.run(replace(loadgen_settings, procs=procs), on_window=sample)
        if loaded["lost_parts"]:
            raise RuntimeError(f"a Dask worker was lost in the middle: {loaded['lost_parts']}")
    else:
        loaded = runner.run_here(loadgen_settings, on_window=sample)
    result = LoadResult.from_dict(loaded, "loadgen")
    (before, machine_before), (after, machine_after) = window["start"], window["end"]
    generator = result.generator
    machine = machine_window(machine_before, machine_after)
    return Run(
        kind=kind,
        model=server.model,
        work=server.work,
        trial=trial,
        cores_allowed=len(cores) if cores else available_cores(),
        server=ServerFigures(
            pid=server.pid,
            **cpu_window(before, after),
            peak_rss_bytes=after.peak_rss_bytes,
            threads=after.threads,
            processes=after.processes,
        ),
        loadgen=result,
        # The generator could not produce the load: a core of its own used up, or (open loop)
        # the target rate not reached. A late tail of sends alone is reported, not flagged here.
        generator_limited=bool(
            generator.saturated
            or (result.rate and (generator.achieved_send_rps or 0) < 0.95 * result.rate)
        ),
        machine=MachineWindow.from_dict(machine, "machine") if machine else None,
        **sweep,
    )


class Bench:
    """The bench's state: its settings, the servers up, the results file, the probe."""

    def __init__(
        self, settings: BenchSettings, results: ResultsFile, dask: DaskRunner | None = None,
        probe: Probe | None = None,
    ) -> None:  # fmt: skip
        self.settings, self.results, self.dask, self.probe = settings, results, dask, probe
        self.servers: list[ServerProcess] = []
        self.done = 0
        self.stuck = 0  # points in a row that stayed disturbed through their attempts
        self.began = time.monotonic()
        self.speed = results.results.metadata.iterations_per_second
        # With Dask the load comes from other hosts: they reach the servers at this machine's
        # address on the way to the scheduler, so the servers listen on every address.
        self.target = dask.local_address() if dask else None

    def start(self, work: Work, cores: list[int] | None = None) -> dict[str, ServerProcess]:
        """One fresh server per model, all starting at once (start-up is mostly imports)."""
        servers = {}
        extra = ("--host", "0.0.0.0") if self.dask else ()
        for model in self.settings.models:
            servers[model] = start_model(model, work, self.settings.workers, extra, cores=cores,
                                         python=self.settings.python)  # fmt: skip
            self.servers.append(servers[model])
        for server in servers.values():
            server.wait_ready()
            runner.probe(self.loadgen_settings(server))
        return servers

    def stop(self, servers: dict[str, ServerProcess], kind: RunKind) -> None:
        """Stop them all at once; keep each one's stopped event (its per-worker split)."""
        for server in servers.values():
            server.request_stop()
        for server in servers.values():
            self.servers.remove(server)
            stopped = server.stop_or_none()
            self.results.add_server(ServerRecord(
                kind=kind, model=server.model, work=server.work,
                ready=Ready.from_dict(server.ready, "ready"),
                stopped=Stopped.from_dict(stopped, "stopped") if stopped else None,
            ))  # fmt: skip

    def stop_all(self) -> None:
        for server in self.servers:
            server.request_stop()
        for server in self.servers:
            server.stop_or_none()
        self.servers.clear()

    def loadgen_settings(self, server: ServerProcess, **changes: Any) -> engine.Settings:
        s = self.settings
        base = engine.Settings(
            host=self.target or server.ready["host"], port=server.ready["port"], concurrency=1,
            duration=s.duration, warmup=s.warmup, warmup_max=s.warmup_max,
            min_replies=s.min_replies, duration_max=s.duration_max, timeout=s.timeout,
        )  # fmt: skip
        return replace(base, **changes)

    def point(
        self, server: ServerProcess, settings: engine.Settings, kind: RunKind, trial: int,
        label: str, cores: list[int] | None = None, **sweep: float,
    ) -> Run:  # fmt: skip
        """One point's trial: measured, and measured again while disturbed (``retries`` times
        at most); every attempt is written, the last one counts. Once ``STUCK_AFTER`` points in
        a row stayed disturbed through all their attempts, the machine is busy for longer than
        a retry waits: points are measured once each until one is quiet again."""
        retries = self.settings.retries if self.stuck < STUCK_AFTER else 0
        for attempt in range(retries + 1):
            run = replace(measure(server, settings, kind, trial, cores, self.dask, **sweep),
                          attempt=attempt)  # fmt: skip
            self.results.add_run(run)
            reasons = disturbances(run, self.speed)
            self.print_run(run, label, reasons, again=attempt < retries)
            if not reasons:
                break
        self.stuck = self.stuck + 1 if reasons else 0
        if self.stuck == STUCK_AFTER and self.settings.retries:
            print("      the machine stays busy: disturbed points are measured once each "
                  "until one is quiet again", flush=True)  # fmt: skip
        return run

    def read_machine(self, kind: RunKind, work: Work, trial: int | None) -> None:
        """A capacity reading between rounds, kept in the results file."""
        if self.probe is None:
            return
        reading = self.probe.read()
        probe = MachineProbe(
            at_s=round(time.monotonic() - self.began, 3), kind=kind, work=work, trial=trial,
            solo_rate=round(reading.solo_rate), parallel_rate=round(reading.parallel_rate),
            workers=reading.workers, cpu_share=round(reading.cpu_share, 3),
        )  # fmt: skip
        self.results.add_probe(probe)
        speed = ""
        if self.speed:
            speed = f", one at {reading.solo_rate / self.speed:.0%} of its calibrated speed"
        print(f"      machine: {reading.capacity:.2f} cores' worth of work with "
              f"{reading.workers} busy{speed}", flush=True)  # fmt: skip

    def print_run(self, run: Run, label: str, reasons: list[str], again: bool) -> None:
        self.done += 1
        loadgen, server = run.loadgen, run.server
        flag = "  (generator-limited)" if run.generator_limited else ""
        done = efficiency(run, self.speed)
        flag += f"  efficiency {done:.2f}" if done is not None else ""
        if reasons:
            flag += f"\n      disturbed: {'; '.join(reasons)}{'; measured again' if again else ''}"
        p50 = loadgen.latency_us.p50
        print(
            f"[{self.done:3}] {run.model:{NAME_WIDTH}} {run.work.spec:13} {label:10} "
            f"{loadgen.throughput_rps:9,.0f} replies/s  p50 {p50 or 0:7,} us  "
            f"lost {loadgen.lost:4}  server {server.cores_used or 0:.2f} cores  "
            f"generator {loadgen.generator.cpu_cores:.2f}{flag}",
            flush=True,
        )

    def workload(self, work: Work) -> None:
        """One workload (calibrated): its servers started, the matrix, then (if asked) the
        load sweep at fractions of the capacity the matrix just measured, on the same servers."""
        servers = self.start(work)
        try:
            capacity = self.matrix(servers, work)
            if self.settings.load_sweep and work.spec in {w.spec for w in self.sweep_works()}:
                self.load_sweep(servers, capacity)
        finally:
            self.stop(servers, RunKind.MATRIX)

    def sweep_works(self) -> list[Work]:
        chosen = [work for work in self.settings.sweep_works if work in self.settings.works]
        return chosen or self.settings.works

    def matrix(self, servers: dict[str, ServerProcess], work: Work) -> dict[str, float]:
        """Closed loop, in rounds (each model in turn), the machine read before the first and
        after each; returns each model's capacity: its best median replies/s."""
        rates: dict[tuple[str, int], list[float]] = {}
        self.read_machine(RunKind.MATRIX, work, None)
        for trial in range(self.settings.trials):
            for level in self.settings.concurrency:
                for model, server in servers.items():
                    settings = self.loadgen_settings(server, concurrency=level)
                    run = self.point(
                        server, settings, RunKind.MATRIX, trial, f"c={level} t{trial + 1}"
                    )
                    rates.setdefault((model, level), []).append(run.loadgen.throughput_rps)
            self.read_machine(RunKind.MATRIX, work, trial)
        return {
            model: max(statistics.median(rates[(model, level)])
                       for level in self.settings.concurrency)
            for model in servers
        }  # fmt: skip

    def load_sweep(self, servers: dict[str, ServerProcess], capacity: dict[str, float]) -> None:
        """Open loop at each percentage of each model's own capacity."""
        for percent in self.settings.load_sweep:
            for model, server in servers.items():
                rate = max(1.0, capacity[model] * percent / 100)
                settings = self.loadgen_settings(
                    server, mode="open", rate=rate, concurrency=self.settings.sweep_clients
                )
                self.point(server, settings, RunKind.LOAD_SWEEP, 0, f"{percent}% load",
                           offered_percent=percent, capacity_rps=capacity[model])  # fmt: skip

    def core_sweep(self, work: Work) -> None:
        """The servers pinned to 1..K cores in turn, with ``work`` (calibrated)."""
        allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        for count in range(1, len(allowed) + 1):
            cores = allowed[:count]
            servers = self.start(work, cores)
            # The generator keeps off the server's cores while there are others to run on.
            os.sched_setaffinity(0, allowed[count:] or allowed)
            for trial in range(self.settings.core_trials or self.settings.trials):
                for server in servers.values():
                    settings = self.loadgen_settings(
                        server, concurrency=self.settings.core_concurrency
                    )
                    self.point(
                        server, settings, RunKind.CORE_SWEEP, trial, f"{count} core(s)", cores
                    )
            self.stop(servers, RunKind.CORE_SWEEP)
            self.read_machine(RunKind.CORE_SWEEP, work, count)
        if allowed:
            os.sched_setaffinity(0, allowed)


def _the_matrix(bench: Bench, calibration: Calibration) -> None:
    """Every workload's matrix and sweeps, then the core sweep; the servers stopped after."""
    try:
        for asked in bench.settings.works:
            bench.workload(calibration.of(asked))
        if bench.settings.core_sweep:
            bench.core_sweep(calibration.of(bench.settings.core_work))
    except KeyboardInterrupt:  # the servers are stopped below, then the run ends with 130
        runs, path = len(bench.results.results.runs), bench.results.path
        print(f"\ninterrupted: the {runs} finished runs are in {path}", file=sys.stderr)
        raise
    finally:
        bench.stop_all()


def results_folder(out: Path) -> Path:
    """The folder a bench writes into: ``out`` itself. Until December 2026 ``--out`` named
    the folder *above* ``latest/``; a folder that holds an earlier bench's ``latest/`` and
    no results of its own is still taken that way, with a note."""
    if not (out / "results.json").exists() and (out / "latest" / "results.json").exists():
        print(f"note: --out now names the results folder itself; {out} holds an earlier "
              f"bench's latest/, so this one writes to {out / 'latest'} as before",
              flush=True)  # fmt: skip
        return out / "latest"
    return out


def run_bench(settings: BenchSettings) -> Path:
    """Run the whole bench; return the folder holding its results."""
    server_python, settings.models, skipped = runnable(settings.python, settings.models,
                                                       speed=True)  # fmt: skip
    calibration = calibrate_works([*settings.works, settings.core_work])
    folder = results_folder(settings.out)
    archived = archive(folder)
    folder.mkdir(parents=True, exist_ok=True)
    about = metadata(vars(settings), calibration.measured, server_python, skipped)
    results = ResultsFile(folder, Metadata.from_dict(about, "metadata"))
    if archived:
        print(f"previous results moved to {archived}", flush=True)
    for spec, figures in calibration.measured.items():
        print(f"{spec} is {figures['iterations']} iterations for every model", flush=True)
    with (
        DaskRunner(settings.dask) if settings.dask else contextlib.nullcontext() as dask,
        Probe(phase_s=settings.probe_phase)
        if settings.probe
        else contextlib.nullcontext() as probe,
    ):
        _the_matrix(Bench(settings, results, dask, probe), calibration)
    print(f"\n{len(results.results.runs)} runs written to {results.path}", flush=True)
    if settings.timeline:
        print("tracing one burst per model for the timeline...", flush=True)
        timeline = TimelineSettings(models=settings.models, works=settings.timeline_works,
                                    repeat=settings.timeline_repeat, out=folder,
                                    python=settings.python)  # fmt: skip
        record_timeline(timeline, metadata=about, known=calibration.works.values())
    return folder
