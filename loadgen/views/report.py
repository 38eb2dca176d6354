"""report.md from a results.json alone: the figures, a table per workload, and what they show.

    python -m loadgen report results/latest/results.json [--out DIR]

Every sentence under "What this shows" is computed from the data, numbers included. Each
textbook expectation is checked against the measurements; where they disagree, the report says
so instead of repeating the textbook. The thresholds those checks use are one table,
``loadgen.analysis.expectations``; so are the ones that flag a figure to read with care: a p99
drawn from too few samples, a run taken while the machine was busy.
"""

from __future__ import annotations

from pathlib import Path

from loadgen.analysis.expectations import (
    EXPECTED,
    disturbances,
    efficiency,
    other_cores,
    parallel_floor,
)
from loadgen.analysis.results import (
    Metadata,
    Results,
    Run,
    RunKind,
    Timeline,
    load,
    load_timeline,
    write_text_atomically,
)
from loadgen.analysis.summary import (
    Point,
    Summary,
    baseline_of,
    expects_overlap,
    expects_parallel,
    knee,
    median,
    ordered,
)
from loadgen.views.figures import FIGURES, run_name
from loadgen.views.lesson import lesson
from servers import MODELS, WAIT_KINDS
from servers.work import Work, WorkKind

CAPTIONS = {
    "throughput": "Throughput against concurrency (closed loop), one panel per workload.",
    "cores": "Server CPU in cores at the highest concurrency: above the 1-core line is parallel.",
    "latency_load": "p50 (solid) and p99 (dashed) latency against achieved rate, open loop.",
    "spectrum": "Latency by percentile at the highest concurrency (HdrHistogram style).",
    "scaling": "Throughput against the cores the server may use, CPU workload.",
    "timeline": "One traced burst per model: a bar per request (dark: computing, pale: waiting "
    "for the GIL, a core or I/O), a row per worker, and the cores busy underneath.",
    "timeline_gil": "Bursts of their own with Python 3.15's sampling profiler watching: under "
    "each model's bars, who held a GIL when.",
}
LISTED = 6  # points or runs named in one sentence; the rest are counted


# ---- the closed-loop matrix, one workload at a time -----------------------------------------


def _ratio_clause(summary: Summary, model: str, work: Work, base: float) -> str:
    point = summary.compared(model, work)
    unit = "core" if round(point.server_cores, 1) == 1.0 else "cores"
    return f"{model} {point.rate / base:.2f}x using {point.server_cores:.1f} {unit}"


def workload_findings(summary: Summary, work: Work) -> list[str]:
    """Sentences about one workload, each with its numbers, checked against what the registry
    expects of each model on the interpreter the servers ran on."""
    label = work.spec
    models = summary.models(RunKind.MATRIX, work)
    base_model = baseline_of(models)
    if base_model is None:
        return [f"With {label}, no baseline model was measured, so no ratios are given."]
    base = summary.compared(base_model, work)
    others = [m for m in models if m != base_model]
    lines = [
        f"With {label} and {base.level} clients in flight, the {base_model} loop answered "
        f"{base.rate:,.0f} replies/s using {base.server_cores:.1f} cores; against it, "
        + "; ".join(_ratio_clause(summary, m, work, base.rate) for m in others)
        + "."
    ]
    kind = work.kind
    if kind == "cpu":
        lines += cpu_findings(summary, work, base_model, others)
    elif kind in WAIT_KINDS:
        lines += wait_findings(summary, work, kind, base_model, others)
    elif kind == "echo":
        lines += echo_findings(summary, work, base_model, others)
    return lines + limited_findings(summary, work, models)


def _rounds(ratios: list[float]) -> str:
    """The spread of a speed-up over the rounds, for a sentence."""
    if len(ratios) < 2:
        return "one round, so no spread was measured"
    return f"{len(ratios)} rounds: {min(ratios):.2f}-{max(ratios):.2f}x"


def _agreement(ratios: list[float], above: float) -> str:
    """Whether every round falls on the verdict's side of ``above`` (beyond the noise)."""
    if len(ratios) < 2:
        return ""
    side = [ratio >= above for ratio in ratios]
    if all(side) or not any(side):
        return ", every round on the same side, beyond the noise of this run"
    return (f"; only {max(sum(side), len(side) - sum(side))} of {len(side)} rounds agree: "
            f"within the noise of this run")  # fmt: skip


def _evidence(summary: Summary, point: Point) -> str:
    """What disturbed a point's counted trials, for a sentence (empty: nothing did)."""
    reasons = [f"round {run.trial + 1}: {'; '.join(disturbances(run, point.iterations_per_second))}"
               for run in point.disturbed]  # fmt: skip
    return f" Its counted runs were disturbed ({'; '.join(reasons)})." if reasons else ""


def cpu_findings(summary: Summary, work: Work, base_model: str, others: list[str]) -> list[str]:
    """CPU work: did each model compute in parallel, or take turns, as expected of it here?
    Each speed-up is the median over rounds of the model's rate over the baseline's in the
    same round, judged against what the machine delivered then (its capacity), with the
    spread over the rounds."""
    turns = EXPECTED.turns_speedup, EXPECTED.turns_cores
    capacity = summary.capacity(work)
    floor = parallel_floor(capacity)
    lines = []
    if capacity is not None and capacity < EXPECTED.parallel_speedup:
        lines.append(f"The machine itself delivered only {capacity:.2f} cores' worth of work "
                     f"around these runs: it could not show CPU work done in parallel "
                     f"then.")  # fmt: skip
    for m in others:
        point = summary.compared(m, work)
        ratios = summary.speedups(m, base_model, work)
        ratio, cores = median(ratios), point.server_cores
        expected = expects_parallel(m, summary.gil_enabled(m))
        no_gil = _gil_clause(summary, m)
        where = f"on {cores:.1f} cores in {_processes(point.processes)}"
        share = (f", {ratio / capacity:.2f} of the {capacity:.2f}x the machine delivered then"
                 if capacity else "")  # fmt: skip
        spread = _rounds(ratios)
        if expected and ratio >= floor:
            lines.append(f"{m} ran the CPU work in parallel{no_gil}: {ratio:.2f}x the "
                         f"{base_model} loop ({spread}{_agreement(ratios, floor)}) {where}"
                         f"{share}.")  # fmt: skip
        elif expected and capacity and ratio >= EXPECTED.capacity_share * capacity:
            lines.append(f"{m} got what the machine had to give ({ratio:.2f}x the {base_model} "
                         f"loop, {spread}) {where}{share}: too little to tell parallel work "
                         f"from taking turns.{_evidence(summary, point)}")  # fmt: skip
        elif expected:
            lines.append(f"Unlike the expectation that {m} runs CPU work in parallel"
                         f"{no_gil}, it reached only {ratio:.2f}x the {base_model} loop "
                         f"here ({spread}) {where}{share}.{_evidence(summary, point)}")  # fmt: skip
        elif expected is False and ratio <= turns[0] and cores <= turns[1]:
            lines.append(f"{m} did not speed up the CPU work ({ratio:.2f}x, {spread}"
                         f"{_agreement(ratios, turns[0])}; {cores:.1f} cores): its requests "
                         f"took turns on one core.")  # fmt: skip
        elif expected is False:
            lines.append(f"Unlike the expectation that the requests of {m} take turns on one "
                         f"core, it reached {ratio:.2f}x the {base_model} loop ({spread}) "
                         f"{where}.{_evidence(summary, point)}")  # fmt: skip
    return lines


def wait_findings(
    summary: Summary, work: Work, kind: WorkKind, base_model: str, others: list[str]
) -> list[str]:
    """Waiting work (io=, block=): did each model overlap the waits, as expected of it?"""
    lines = []
    for m in others:
        high = [level for level in summary.levels(RunKind.MATRIX, m, work)
                if level >= EXPECTED.overlap_clients]  # fmt: skip
        expected = expects_overlap(m, kind)
        if not high or expected is None:
            continue
        level = max(high)
        times = summary.rate(RunKind.MATRIX, m, work, level) / max(
            summary.rate(RunKind.MATRIX, base_model, work, level), 1e-9
        )
        at = f"{times:.1f}x the {base_model} loop at {level} clients"
        if expected and times >= EXPECTED.overlap_speedup:
            while_ = "While waiting" if kind == "io" else "While blocked in a call"
            lines.append(f"{while_}, {m} overlapped requests: {at}.")
        elif expected:
            lines.append(f"Unlike the expectation that {m} overlaps these waits, it "
                         f"reached only {at}.")  # fmt: skip
        elif times <= EXPECTED.stall_speedup:
            lines.append(f"{m} did not overlap these waits ({at}): a call that blocks "
                         f"its one thread stalls every request in progress.")  # fmt: skip
        else:
            lines.append(f"Unlike the expectation that a blocking call stalls {m}, it "
                         f"reached {at}.")  # fmt: skip
    return lines


def _gil_clause(summary: Summary, model: str) -> str:
    """How the GIL stood in ``model``'s servers, where it was not simply on."""
    if summary.gil_enabled(model) and not summary.metadata.gil_enabled:
        return " (its servers ran with the GIL back on: an extension it imports switched it on)"
    return "" if summary.gil_enabled(model) else " on this free-threaded build (no GIL)"


def echo_findings(summary: Summary, work: Work, base_model: str, others: list[str]) -> list[str]:
    """No work: what handing requests to another worker costs, and each variant's swap."""
    base = max(summary.compared(base_model, work).rate, 1e-9)
    ratio = {m: summary.compared(m, work).rate / base for m in others}
    lines = []
    for m in others:
        known = MODELS.get(m)
        if known and known.hands_off:
            across = "worker processes" if known.forks else "interpreters"
            verdict = (f"as expected, each request pays for pickling and two hops between "
                       f"{across}" if ratio[m] < 1 else
                       f"unexpectedly, the hops between {across} did not cost it")  # fmt: skip
            lines.append(f"With no work to share out, {m} answered {ratio[m]:.2f}x the "
                         f"{base_model} loop: {verdict}.")  # fmt: skip
        original = known.variant_of if known else None
        if original in ratio:
            lines.append(
                f"{m} is the {original} server with one part swapped: "
                + " against ".join(f"{name} {summary.compared(name, work).rate:,.0f} replies/s "
                                   f"at {cpu_per_reply(summary, name, work):.1f} µs of server "
                                   f"CPU per reply" for name in (m, original))
                + f" ({ratio[m] / ratio[original]:.2f}x).")  # fmt: skip
    return lines


def limited_findings(summary: Summary, work: Work, models: list[str]) -> list[str]:
    limited = [m for m in models if summary.compared(m, work).limited]
    if not limited:
        return []
    return [f"At that concurrency, the generator was the limit for {', '.join(limited)} (it "
            f"used a whole core or fell short of its rate): those figures are how fast the "
            f"generator could ask, a lower bound for the server."]  # fmt: skip


def _processes(count: float) -> str:
    return "one process" if round(count) == 1 else f"{count:.0f} processes"


def cpu_per_reply(summary: Summary, model: str, work: Work) -> float:
    """Microseconds of server CPU per reply, at the level compared (cores / replies per s)."""
    point = summary.compared(model, work)
    return point.server_cores / max(point.rate, 1e-9) * 1e6


# ---- the sweeps ------------------------------------------------------------------------------


def sweep_findings(summary: Summary) -> list[str]:
    return load_sweep_findings(summary) + core_sweep_findings(summary)


def _knee_clause(summary: Summary, model: str, work: Work) -> str:
    """How far ``model``'s p99 stayed near its light-load value as the open-loop load grew."""
    points = [(point.rate, point.p99_us) for point in
              (summary.point(RunKind.LOAD_SWEEP, model, work, percent)
               for percent in summary.levels(RunKind.LOAD_SWEEP, model, work))]  # fmt: skip
    found = knee(points)
    if found:
        return f"{model} up to {found[0]:,.0f} replies/s"
    if points and points[-1][1] <= EXPECTED.knee_factor * points[0][1]:
        return f"{model} {'at every load' if len(points) > 1 else 'untested'}"
    return f"{model} not even at the lightest load measured"


def load_sweep_findings(summary: Summary) -> list[str]:
    found = (load_sweep_finding(summary, work) for work in summary.works(RunKind.LOAD_SWEEP))
    return [sentence for sentence in found if sentence]


def load_sweep_finding(summary: Summary, work: Work) -> str | None:
    """How far each model's p99 stayed near its light-load value with ``work`` in open loop."""
    parts = [_knee_clause(summary, model, work)
             for model in summary.models(RunKind.LOAD_SWEEP, work)]  # fmt: skip
    if not parts:
        return None
    return (
        f"With {work.spec} in open loop, p99 latency stayed within "
        f"{EXPECTED.knee_factor:g}x of its light-load value for " + "; ".join(parts) + "."
    )


def core_sweep_findings(summary: Summary) -> list[str]:
    """Replies/s from the fewest to the most cores, against what each model is expected to do."""
    work = next(iter(summary.works(RunKind.CORE_SWEEP)), None)
    if not work:
        return []
    changes = []
    for model in summary.models(RunKind.CORE_SWEEP, work):
        counts = summary.levels(RunKind.CORE_SWEEP, model, work)
        if len(counts) >= 2:
            low = summary.rate(RunKind.CORE_SWEEP, model, work, counts[0])
            high = summary.rate(RunKind.CORE_SWEEP, model, work, counts[-1])
            changes.append((model, counts[0], counts[-1], low, high))
    if not changes:
        return []
    lines = [f"With {work.spec}, going from {changes[0][1]} to "
             f"{changes[0][2]} cores took "
             + "; ".join(f"{m} from {lo:,.0f} to {hi:,.0f} replies/s "
                         f"({f'{hi / lo:.2f}x' if lo else 'no reply on the fewest cores'})"
                         for m, _, _, lo, hi in changes) + "."]  # fmt: skip
    lines += disagreement_findings(summary, work, changes[0][2])
    for model, _, _, low, high in changes:
        gain = high / low if low else 0
        expected = expects_parallel(model, summary.gil_enabled(model))
        if expected and gain < EXPECTED.core_gain:
            lines.append(f"Unlike the expectation, {model} did not scale with cores here "
                         f"({gain:.2f}x).")  # fmt: skip
        if expected is False and gain > EXPECTED.core_gain:
            lines.append(f"Unlike the expectation of a flat line for requests that take turns on "
                         f"one core, {model} gained {gain:.2f}x with more cores here.")  # fmt: skip
    return lines


def disagreement_findings(summary: Summary, work: Work, cores: int) -> list[str]:
    """The speed-up over the baseline on every core, measured twice: by the matrix and by the
    core sweep on its most cores. Where the two differ by more than ``disagreement``, say so,
    with each side's work efficiency and the machine's capacity around each."""
    if work not in summary.works(RunKind.MATRIX):
        return []
    base_model = baseline_of(summary.models(RunKind.CORE_SWEEP, work))
    if base_model is None or cores not in summary.levels(RunKind.CORE_SWEEP, base_model, work):
        return []
    base_sweep = summary.rate(RunKind.CORE_SWEEP, base_model, work, cores)
    base_matrix = summary.compared(base_model, work).rate
    lines = []
    for model in summary.models(RunKind.CORE_SWEEP, work):
        if model == base_model or cores not in summary.levels(RunKind.CORE_SWEEP, model, work):
            continue
        sweep = summary.point(RunKind.CORE_SWEEP, model, work, cores)
        matrix = summary.compared(model, work)
        a, b = matrix.rate / max(base_matrix, 1e-9), sweep.rate / max(base_sweep, 1e-9)
        if abs(a - b) <= EXPECTED.disagreement * max(a, b):
            continue
        evidence = []
        for point, kind in ((matrix, RunKind.MATRIX), (sweep, RunKind.CORE_SWEEP)):
            name, done = KIND_NAMES[kind], point.efficiency
            capacity = summary.capacity(work, kind)
            evidence.append(f"the {name}'s work efficiency {done:.2f}" if done else f"the {name}'s")
            if capacity:
                evidence[-1] += f" with the machine at {capacity:.2f} cores' worth"
        lines.append(f"Two measurements of one quantity disagree for {model}: the closed loop "
                     f"gave {a:.2f}x the {base_model} loop, the core sweep on {cores} cores "
                     f"{b:.2f}x (more than {EXPECTED.disagreement:.0%} apart). The machine "
                     f"differed between them: {'; '.join(evidence)}.")  # fmt: skip
    return lines


# ---- the traced bursts -----------------------------------------------------------------------


def timeline_findings(timeline: Timeline | None) -> list[str]:
    """From the traced bursts, per model: how long the drawn (median) burst took and the range
    over all bursts, the cores busy on average over it (all its CPU time over that span: robust
    to the strip's millisecond spikes), and the median share of a core per request."""
    if not timeline:
        return []
    lines = []
    for spec, traces in timeline.traces.items():
        parts = []
        for model in ordered(traces):
            requests = traces[model].requests
            if not requests:
                continue
            shares = [r.core_share for r in requests]
            first = min(r.start_ns for r in requests)
            last = max(r.end_ns for r in requests)
            cores = sum(r.cpu_ns for r in requests) / max(1, last - first)
            done = (last - traces[model].burst_ns) / 1e6
            spread = traces[model].bursts_ms
            within = (f" (of {len(spread)} bursts: {min(spread):.1f}-{max(spread):.1f})"
                      if len(spread) > 1 else "")  # fmt: skip
            parts.append(f"{model} done in {done:.1f} ms{within}, {cores:.1f} cores busy on "
                         f"average, {median(shares):.0%} of a core per request")  # fmt: skip
        if parts:
            lines.append(f"In the traced burst of {timeline.burst} requests with {spec}: "
                         + "; ".join(parts) + ".")  # fmt: skip
    return lines + gil_findings(timeline)


def gil_findings(timeline: Timeline) -> list[str]:
    """From the bursts sampled for the GIL (3.15+): per model, how often the GIL changed hands
    and how long two workers held one at the same time; or why it was not sampled."""
    if not timeline.gil:
        return [f"The GIL is not drawn: {timeline.gil_missing}."] if timeline.gil_missing else []
    lines = []
    for spec, sampled in timeline.gil.items():
        work = timeline.work(spec)
        if not (work.cpu_iterations or work.cpu_seconds):  # no computing: nothing to hold it for
            continue
        parts = []
        for model in ordered(sampled):
            gil = sampled[model]
            held = sum(b - a for spans in gil.held.values() for a, b in spans) / 1e6
            computing = sum(r.cpu_ns for r in gil.trace.requests) / 1e6
            if not gil.held:
                parts.append(f"{model}: the profiler named none of the threads that served")
            elif held < 0.1 * computing:  # seen only in instants: not the GIL it computed under
                parts.append(f"{model}: the profiler saw a GIL held for only {held:.1f} ms of "
                             f"{computing:.1f} ms of computing, in instants: it does not "
                             f"follow the GIL this model computes under")  # fmt: skip
            else:
                parts.append(f"{model}: {len(gil.held)} thread(s) held a GIL for {held:.1f} ms "
                             f"of {computing:.1f} ms of computing, handed over "
                             f"{gil.handovers()} times, two at once for "
                             f"{gil.overlap_ns() / 1e6:.1f} ms")  # fmt: skip
        if parts:
            lines.append(f"Sampled for the GIL with {spec} (Python 3.15's profiler, bursts of "
                         f"their own; it reads one thread after another, so a handover can "
                         f"show two holders for a sample, 0.1 ms): "
                         + "; ".join(parts) + ".")  # fmt: skip
    return lines


# ---- how far to trust the figures -------------------------------------------------------------


KIND_NAMES = {
    RunKind.MATRIX: "closed loop",
    RunKind.LOAD_SWEEP: "load sweep",
    RunKind.CORE_SWEEP: "core sweep",
}


def _listed(names: list[str]) -> str:
    shown = "; ".join(names[:LISTED])
    return shown + (f"; and {len(names) - LISTED} more" if len(names) > LISTED else "")


def sample_findings(summary: Summary) -> list[str]:
    """Where a p99 rests on too few samples to trust, counted per kind and workload (files
    without sample counts: nothing)."""
    points = summary.points()
    few = [point for point in points if point.fewest_samples is not None]
    if not few:
        return []
    fewest = min(point.fewest_samples or 0 for point in few)
    groups = list(dict.fromkeys((point.kind, point.work) for point in points))
    counts = [(f"{KIND_NAMES[kind]} with {work.spec}",
               sum((p.kind, p.work) == (kind, work) for p in few),
               sum((p.kind, p.work) == (kind, work) for p in points))
              for kind, work in groups]  # fmt: skip
    where = "; ".join(f"{name}: {n} of {total}" for name, n, total in counts if n)
    return [f"The p99 of {len(few)} of {len(points)} points was drawn from fewer than "
            f"{EXPECTED.p99_samples:,} samples in a trial (as few as {fewest:,}), so its slowest "
            f"1% is fewer than {EXPECTED.p99_samples // 100} requests ({where}). Read those p99 "
            f"figures as rough; a longer --duration gives more samples."]  # fmt: skip


def _attempts(summary: Summary, run: Run) -> str:
    """One disturbed attempt named, its evidence, and what came of measuring it again."""
    where = run_name(run)
    reasons = "; ".join(disturbances(run, summary.iterations_per_second))
    return f"{where}, round {run.trial + 1}, attempt {run.attempt + 1}: {reasons}"


def machine_findings(summary: Summary) -> list[str]:
    """The machine during the run: its capacity and speed between rounds, the work efficiency
    of the runs, how busy it was, and which runs were disturbed and measured again."""
    results, speed = summary.results, summary.iterations_per_second
    lines = []
    probes = results.probes
    if probes:
        capacity = [probe.capacity for probe in probes]
        lines.append(f"Between rounds, {len(probes)} readings of the machine: "
                     f"{probes[0].workers} processes of the servers' pure-Python work did "
                     f"{median(capacity):.2f}x one (median; {min(capacity):.2f}-"
                     f"{max(capacity):.2f}), the most any model could speed up CPU work "
                     f"here.")  # fmt: skip
        if speed:
            solo = [probe.solo_rate / speed for probe in probes]
            lines.append(f"One process alone ran at {min(solo):.0%}-{max(solo):.0%} of the "
                         f"calibrated speed (median {median(solo):.0%}): how far the "
                         f"machine's speed drifted during the run.")  # fmt: skip
    else:
        lines.append("The machine's capacity was not read during this run (a file from "
                     "before the readings, or --no-probe).")  # fmt: skip
    done = [e for run in results.counted if (e := efficiency(run, speed)) is not None]
    if done:
        lines.append(f"Work efficiency (the calibrated CPU per request over the server CPU "
                     f"spent per reply) of the {len(done)} runs with CPU work: median "
                     f"{median(done):.2f}, {min(done):.2f}-{max(done):.2f}; below "
                     f"{EXPECTED.efficiency:g} a run counts as disturbed.")  # fmt: skip
    lines += busy_findings(summary)
    again = results.superseded
    if again:
        lines.append(f"{len(again)} disturbed attempt{'s were' if len(again) > 1 else ' was'} "
                     f"measured again: {_listed([_attempts(summary, run) for run in again])}."
                     )  # fmt: skip
    still = [run for run in results.counted if disturbances(run, speed)]
    if still:
        once = sum(run.attempt == 0 for run in still)
        lines.append(f"{len(still)} run{'s' if len(still) > 1 else ''} stayed disturbed and "
                     f"count as they are: {_listed([_attempts(summary, run) for run in still])}."
                     f" Read their figures as the machine's as much as the model's.")  # fmt: skip
        if once:
            lines.append(f"Not measured again ({once} of them): the bench stops retrying "
                         f"while the machine stays busy, or ran with --retries 0.")  # fmt: skip
    elif results.runs and not again:
        lines.append("No run was disturbed.")
    return lines


def busiest(results: Results) -> tuple[float, float] | None:
    """Over the counted runs' windows: the largest share of CPU time stolen and the most cores
    used outside the bench (None: a file that cannot tell)."""
    measured = [run for run in results.counted if run.machine is not None]
    if not measured:
        return None
    steal = max(run.machine.steal_share or 0 for run in measured)  # type: ignore[union-attr]
    return steal, max(0.0, *(other_cores(run) or 0 for run in measured))


def busy_findings(summary: Summary) -> list[str]:
    """How busy the machine was over the runs' windows; nothing for a file that cannot tell."""
    found = busiest(summary.results)
    if found is None:
        return []
    steal, others = found
    return [f"Over the runs' windows, CPU steal reached at most {steal:.1%} and processes "
            f"outside the bench used at most {others:.1f} cores (busy: steal above "
            f"{EXPECTED.steal_share:.0%} or others above {EXPECTED.other_cores:g} "
            f"cores)."]  # fmt: skip


# ---- the document ----------------------------------------------------------------------------


TABLE_HEADER = [
    "model",
    "replies/s",
    "clients",
    "p50 ms",
    "p99 ms",
    "server cores",
    "server CPU µs per reply",
    "OS processes",
    "memory MB",
    "generator cores",
    "lost",
]


def table_rows(summary: Summary, work: Work) -> tuple[list[list[str]], list[str]]:
    """A workload's closed-loop table, one row of cells per model under ``TABLE_HEADER``, and
    the notes that explain its marks (markdown and HTML draw the same cells)."""
    points = [summary.compared(model, work) for model in summary.models(RunKind.MATRIX, work)]
    rows = []
    for p in points:
        mark = " (generator-limited)" if p.limited else ""
        mark += " (disturbed)" if p.disturbed else ""
        few = f" ({p.fewest_samples:,} samples)" if p.fewest_samples is not None else ""
        rows.append([p.model, f"{p.rate:,.0f}{mark}", f"{p.level}", f"{p.p50_us / 1000:.2f}",
                     f"{p.p99_us / 1000:.2f}{few}", f"{p.server_cores:.2f}",
                     f"{cpu_per_reply(summary, p.model, work):,.1f}", f"{p.processes:.0f}",
                     f"{p.peak_rss_bytes / 2**20:,.0f}", f"{p.generator_cores:.2f}",
                     f"{p.lost}"])  # fmt: skip
    notes = []
    if any(p.fewest_samples is not None for p in points):
        notes.append(f"A p99 with a count of samples was drawn from fewer than "
                     f"{EXPECTED.p99_samples:,} in at least one trial (the fewest is shown): "
                     f"its slowest 1% is fewer than {EXPECTED.p99_samples // 100} "
                     f"requests.")  # fmt: skip
    if any(p.disturbed for p in points):
        notes.append("(disturbed): at least one counted trial was disturbed (see the machine "
                     "during this run).")  # fmt: skip
    return rows, notes


def table(summary: Summary, work: Work) -> list[str]:
    rows, notes = table_rows(summary, work)
    lines = ["| " + " | ".join(TABLE_HEADER) + " |", "|---" + "|---:" * 10 + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    for note in notes:
        lines += ["", note]
    return lines


def interpreter_sentence(metadata: Metadata) -> str:
    """Which interpreter ran the servers, when the bench recorded it (``--python``)."""
    server = metadata.server_python
    if not server:
        return f"The servers ran on the generator's Python {metadata.python}."
    gil = "with the GIL" if server.gil_enabled else "with the GIL disabled"
    build = "free-threaded build" if server.free_threaded_build else "GIL build"
    optimized = "PGO/LTO-optimised" if server.optimized else "PGO/LTO not told by its build flags"
    speed = (f", the calibration loop at {server.iterations_per_ms:,.0f} iterations/ms"
             if server.iterations_per_ms else "")  # fmt: skip
    return (f"The servers ran on {server.implementation or '?'} {server.version} "
            f"(`{server.executable}`: {build}, {gil}, {optimized}{speed}); the generator on "
            f"Python {metadata.python}.")  # fmt: skip


def preamble(metadata: Metadata, measured: list[str]) -> list[str]:
    """Where, when, on what and how the file was measured."""
    settings = metadata.settings
    capped = [m for m in measured if m in MODELS and MODELS[m].workers_meaning == "cap"]
    limits = sorted({MODELS[m].default_workers for m in capped})
    own = (f"; {', '.join(capped)} keep their own cap of "
           f"{' or '.join(map(str, limits))} requests in progress" if capped else "")  # fmt: skip
    lines = [
        f"# UDP echo server: {len(measured)} concurrency models compared",
        "",
        f"Measured {metadata.date.replace('T', ' ')} on {metadata.cpu_model} ({metadata.cores} "
        f"cores), {metadata.os}; Python {metadata.python}; "
        + "".join(f"{name} {version}, " for name, version in metadata.packages.items())
        + f"commit {(metadata.git_commit or 'unknown')[:10]}"
        f"{' (with local changes)' if metadata.git_dirty else ''}.",
        "",
        interpreter_sentence(metadata),
        "",
        f"Command: `{metadata.command}`. {settings.get('trials')} trial(s) of "
        f"{settings.get('duration')} s after {settings.get('warmup')} s of warm-up per point; "
        f"`--workers {settings.get('workers')}` for every model with workers{own}.",
    ]
    for model, reason in (metadata.skipped or {}).items():
        lines.append(f"Not measured: {model}, because {reason}.")
    for spec, calibrated in metadata.calibration.items():
        lines.append(f"`{spec}` is {calibrated.iterations:,} iterations of pure Python for every "
                     f"model (calibrated once: {calibrated.ms:g} ms at this machine's best "
                     f"speed).")  # fmt: skip
    return lines


def render(results: Results, figures: list[str], timeline: Timeline | None = None) -> str:
    summary = Summary(results)
    lines = [*preamble(results.metadata, summary.models()), "", "## In short", ""]
    lines += [f"- {sentence}" for sentence in lesson(summary)]
    lines += ["", "## What this shows", ""]
    findings = [sentence for work in summary.works()
                for sentence in workload_findings(summary, work)]  # fmt: skip
    findings += sweep_findings(summary) + timeline_findings(timeline)  # noise: in short
    findings += sample_findings(summary)
    lines += [f"- {sentence}" for sentence in findings]
    lines += ["", "## The machine during this run", ""]
    lines += [f"- {sentence}" for sentence in machine_findings(summary)]
    for work in summary.works():
        lines += ["", f"## {work.spec}", "", *table(summary, work)]
    if figures:
        lines += ["", "## Figures", ""]
        for name in figures:
            lines += [f"![{CAPTIONS.get(name, name)}]({name}.png)", "",
                      f"*{CAPTIONS.get(name, name)}*", ""]  # fmt: skip
    return "\n".join(lines).rstrip() + "\n"


def write_report(results_path: Path, out: Path | None = None) -> Path:
    results = load(results_path)
    out = out or Path(results_path).parent
    out.mkdir(parents=True, exist_ok=True)
    drawn = (*FIGURES, "timeline", "timeline_gil")
    figures = [name for name in drawn if (out / f"{name}.png").exists()]
    saved = Path(results_path).parent / "timeline.json"  # the bench saves it beside the results
    timeline = load_timeline(saved) if saved.exists() else None
    path = out / "report.md"
    write_text_atomically(path, render(results, figures, timeline))
    return path
