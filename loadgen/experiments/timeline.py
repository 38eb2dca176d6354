"""python -m loadgen timeline: one burst of requests per model, traced, saved as timeline.json.

    python -m loadgen timeline [--burst N] [--repeat K] [--models a,b] [--work ...] [--out DIR]
    python -m loadgen timeline --from results/latest/timeline.json     # redraw a saved one

Each model gets a fresh server with ``--trace``, all started before the first burst: a
warm-up, then ``--repeat`` bursts (5) of N requests at once (by default as many as the machine
has cores, so the contrast is clean); the median burst by duration is kept. For ``cpu=2ms``,
``cpu=20ms`` (longer than a 5 ms turn on the GIL) and ``io=5ms``: a panel per model and
workload, one row per worker that handled a request, one bar per request from the start to the
end of its work (``loadgen.views.timeline`` draws it).
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadgen.analysis.results import DEFAULT_OUT, TIMELINE_SCHEMA, write_json_atomically
from loadgen.harness.calibration import calibrate_works
from loadgen.harness.gil import GilError, GilSampler
from loadgen.harness.gil import why_not as gil_why_not
from loadgen.harness.machine import metadata as machine_metadata
from loadgen.harness.pythons import runnable
from loadgen.harness.server import ServerError, ServerProcess, model_args
from servers import MODELS, available_cores
from servers.work import Work, parse

REPLY_TIMEOUT_S = 10.0
# cpu=2ms is the bench's workload; a thread finishes it inside one GIL turn (the switch interval
# is 5 ms), so threads take whole turns. cpu=20ms outlasts the interval: threads then alternate
# within their requests, which is the GIL made visible.
DEFAULT_WORKS = [parse("cpu=2ms"), parse("cpu=20ms"), parse("io=5ms")]
SAMPLER_TRIES = 3
WORKERS = 8
SETTLE_S = 0.05
DEFAULT_REPEAT = 5


def _burst(address: tuple[str, int], size: int) -> None:
    """Send ``size`` requests at once, from as many sockets, and wait for every reply."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(size)]
    try:
        for i, sock in enumerate(socks):
            sock.settimeout(REPLY_TIMEOUT_S)
            sock.sendto(f"timeline {i}".encode(), address)
        for sock in socks:
            sock.recv(2048)
    finally:
        for sock in socks:
            sock.close()


def record(
    models: list[str], works: list[Work], burst: int, folder: Path,
    known: Iterable[Work] = (), repeat: int = DEFAULT_REPEAT, python: str | None = None,
    gil_python: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Run every (work, model) burst; return the traces, keyed by work then model.

    ``known``: works a bench already calibrated, so the timeline's requests do the bench's
    work (and others are scaled from its rate); anything missing is calibrated here. The
    traces are keyed by the work as asked, the calibration says how each was done.
    ``gil_python``: the servers' interpreter as a server sees it, to sample the GIL with
    (3.15+, ``harness.gil``) on bursts of their own; None: not sampled.
    """
    done = calibrate_works(works, known).works
    traces, gil, missing = {}, {}, None
    for work in works:
        # The GIL matters where requests compute; once the sampler failed, it is not tried again
        wanted = done[work].cpu_iterations and missing is None
        sampling = GilSampling(gil_python if wanted else None)
        traces[work.spec] = _traced(models, done[work], burst, repeat, folder, python, sampling)
        gil[work.spec], missing = sampling.traces, missing or sampling.missing
    exact = {work.spec: done[work].exact_spec for work in works}
    return {"burst": burst, "repeat": repeat, "cores": available_cores(), "calibration": exact,
            "traces": traces, "gil": {spec: t for spec, t in gil.items() if t},
            "gil_missing": missing, "gil_switch_interval_s": sys.getswitchinterval()}  # fmt: skip


@dataclass
class GilSampling:
    """The GIL sampled on one workload's servers: each model's own bursts with the sampler
    running (its median one, and who held a GIL when), or why there are none."""

    python: str | None  # the servers' interpreter as a server sees it (None: not sampled)
    traces: dict[str, dict[str, Any]] = field(default_factory=dict)
    missing: str | None = None
    starts: dict[str, list[int]] = field(default_factory=dict)
    held: dict[str, dict[int, list[list[int]]]] = field(default_factory=dict)

    def run(self, servers: dict[str, ServerProcess], burst: int, repeat: int) -> None:
        """``repeat`` bursts per model under the sampler (not forked ones: each of their
        processes has a GIL of its own, and the sampler watches one process)."""
        if self.python is None:
            return
        for model, server in servers.items():
            if MODELS[model].forks:
                continue
            for _ in range(SAMPLER_TRIES):  # 3.15.2's profile writer sometimes fails: again
                try:
                    with GilSampler(server.pid, self.python) as sampler:
                        starts = _bursts(server.address, burst, repeat, warm_up=False)
                    self.starts[model], self.held[model] = starts, sampler.held
                    break
                except GilError as error:
                    failed = f"the GIL sampler failed on {model} {SAMPLER_TRIES} times: {error}"
            else:
                self.missing = failed
                return

    def keep(self, model: str, trace: dict[str, Any]) -> None:
        """The median sampled burst of ``model``, with each worker's GIL intervals in it."""
        if model not in self.starts:
            return
        burst = _median_burst(trace, self.starts[model])
        label_of = {r["thread"]: r["worker"] for r in burst["requests"]}
        end = max((r["end_ns"] for r in burst["requests"]), default=burst["burst_ns"])
        held = {label_of[tid]: [[max(a, burst["burst_ns"]), min(b, end)] for a, b in spans
                                if b > burst["burst_ns"] and a < end]
                for tid, spans in self.held[model].items() if tid in label_of}  # fmt: skip
        self.traces[model] = {"trace": burst, "held": held}


def _traced(
    models: list[str],
    work: Work,
    burst: int,
    repeat: int,
    folder: Path,
    python: str | None,
    sampling: GilSampling | None = None,
) -> dict[str, dict[str, Any]]:
    """Every model's traced server started at once; then, one model at a time, a warm-up and
    ``repeat`` bursts (and, with ``sampling``, as many under the GIL sampler); then all
    stopped (each writes its trace as it stops).

    Start-up (importing, forking) would steal the CPU the bursts are meant to show, so every
    server is ready before the first burst; idle servers wait in recvfrom or their event loop
    and cost nothing. Several bursts, because one lasting a few milliseconds is at the mercy of
    where the OS happens to place each worker: the median one is kept, a typical one.
    """
    files = {model: folder / f".trace-{model}.json" for model in models}
    servers: dict[str, ServerProcess] = {}
    sampling = sampling or GilSampling(None)
    try:
        for model in models:
            args = [*model_args(model, work, WORKERS), "--trace", str(files[model])]
            servers[model] = ServerProcess(args, python=python, work=work)
        for server in servers.values():
            server.wait_ready()
        starts = {
            model: _bursts(server.address, burst, repeat) for model, server in servers.items()
        }
        sampling.run(servers, burst, repeat)
        traces = {}
        for model, server in servers.items():
            trace = _stopped_trace(server, files[model])
            sampled = sampling.starts.get(model, [None])[0]  # the unsampled bursts end there
            traces[model] = _median_burst(trace, starts[model], until_ns=sampled)
            sampling.keep(model, trace)
        return traces
    finally:
        for model, server in servers.items():
            server.close()
            files[model].unlink(missing_ok=True)


def _bursts(address: tuple[str, int], burst: int, repeat: int, warm_up: bool = True) -> list[int]:
    """A warm-up, then ``repeat`` bursts of ``burst`` requests; when each began (ns)."""
    # Warm-up: enough requests that every worker has run the code once (first runs pay for
    # cold caches and the interpreter's specialisation).
    if warm_up:
        _burst(address, max(burst, 2 * WORKERS))
    starts = []
    for _ in range(repeat):
        time.sleep(SETTLE_S)  # let the previous burst's replies and wake-ups settle
        starts.append(time.monotonic_ns())
        _burst(address, burst)
    return starts


def _stopped_trace(server: ServerProcess, trace_file: Path) -> dict[str, Any]:
    try:
        server.stop()  # the stopped event comes once the trace is written
        return json.loads(trace_file.read_text())
    except ServerError as error:
        raise RuntimeError(f"{server.model} did not stop cleanly; no trace ({error})") from None


def _median_burst(
    trace: dict[str, Any], starts: list[int], until_ns: int | None = None
) -> dict[str, Any]:
    """The trace cut to its median burst (by how long it took), every burst's duration beside
    (the last burst ends at ``until_ns``, else with the trace)."""
    bursts = []
    for began, until in zip(starts, [*starts[1:], until_ns], strict=True):
        requests = [r for r in trace["requests"]
                    if began <= r["received_ns"] < (until or float("inf"))]  # fmt: skip
        took = max((r["end_ns"] for r in requests), default=began) - began
        bursts.append((took, began, requests))
    durations = [took / 1e6 for took, _, _ in bursts]
    took, began, requests = sorted(bursts, key=lambda b: b[0])[(len(bursts) - 1) // 2]
    return {**trace, "requests": requests, "burst_ns": began, "bursts_ms": durations}


@dataclass(frozen=True)
class TimelineSettings:
    models: list[str] | None = None  # None: every model the servers' Python can run
    works: list[Work] = field(default_factory=lambda: list(DEFAULT_WORKS))
    burst: int | None = None  # requests at once (None: one per core)
    repeat: int = DEFAULT_REPEAT  # bursts per model and work, the median one drawn
    out: Path = DEFAULT_OUT  # the folder timeline.json goes into
    python: str | None = None  # the servers' interpreter (None: this one)


def record_timeline(
    settings: TimelineSettings, metadata: dict[str, Any] | None = None,
    known: Iterable[Work] = (),
) -> Path:  # fmt: skip
    """Record the bursts and save them as ``timeline.json`` in the settings' folder; the
    bench passes its own metadata and calibration. Models the servers' Python cannot run are
    left out, with the reason in the metadata."""
    s, out = settings, settings.out
    server_python, models, skipped = runnable(s.python, s.models, say=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    unsampled = gil_why_not(server_python["version_info"])
    data = record(models, s.works, s.burst or available_cores(), out, known, s.repeat, s.python,
                  None if unsampled else server_python["executable"])  # fmt: skip
    data["gil_missing"] = unsampled or data["gil_missing"]
    data["gil_switch_interval_s"] = server_python["switch_interval_s"]  # the servers' own
    if metadata is None:
        metadata = machine_metadata({"workers": WORKERS}, {}, server_python, skipped)
    data["metadata"] = metadata
    write_json_atomically(out / "timeline.json", {"schema": TIMELINE_SCHEMA, **data})
    return out / "timeline.json"
