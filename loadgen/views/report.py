"""report.md from a results.json alone: the figures, a table per workload, and what they show.

    python -m loadgen report results/latest/results.json [--out DIR]

Every sentence under "What this shows" is computed from the data, numbers included. Each
textbook expectation is checked against the measurements; where they disagree, the report says
so instead of repeating the textbook.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loadgen.analysis.results import gil_enabled, load, packages
from loadgen.analysis.summary import (
    Summary,
    baseline_of,
    expects_overlap,
    expects_parallel,
    knee,
    median,
    ordered,
    work_label,
)
from loadgen.views.figures import FIGURES
from servers import MODELS, WAIT_KINDS

CAPTIONS = {
    "throughput": "Throughput against concurrency (closed loop), one panel per workload.",
    "cores": "Server CPU in cores at the highest concurrency: above the 1-core line is parallel.",
    "latency_load": "p50 (solid) and p99 (dashed) latency against achieved rate, open loop.",
    "spectrum": "Latency by percentile at the highest concurrency (HdrHistogram style).",
    "scaling": "Throughput against the cores the server may use, CPU workload.",
    "timeline": "One traced burst per model: a bar per request (dark: computing, pale: waiting "
    "for the GIL, a core or I/O), a row per worker, and the cores busy underneath.",
}


def _ratio_clause(summary: Summary, model: str, work: str, base: float) -> str:
    level, rate = summary.best(model, work)
    cores = summary.figure(model, work, level, "server.cores_used")
    unit = "core" if round(cores, 1) == 1.0 else "cores"
    return f"{model} {rate / base:.2f}x using {cores:.1f} {unit}"


def workload_findings(summary: Summary, work: str) -> list[str]:
    """Sentences about one workload, each with its numbers, checked against what the registry
    expects of each model on the interpreter the servers ran on."""
    label = work_label(work, summary.metadata)
    models = summary.models("matrix", work)
    base_model = baseline_of(models)
    if base_model is None:
        return [f"With {label}, no baseline model was measured, so no ratios are given."]
    base_level, base = summary.best(base_model, work)
    base_cores = summary.figure(base_model, work, base_level, "server.cores_used")
    others = [m for m in models if m != base_model]
    lines = [
        f"With {label} and {base_level} clients in flight, the {base_model} loop answered "
        f"{base:,.0f} replies/s using {base_cores:.1f} cores; against it, "
        + "; ".join(_ratio_clause(summary, m, work, base) for m in others)
        + "."
    ]
    ratio = {m: summary.best(m, work)[1] / base for m in others}
    cores = {m: summary.figure(m, work, summary.best(m, work)[0], "server.cores_used")
             for m in others}  # fmt: skip
    processes = {m: summary.figure(m, work, summary.best(m, work)[0], "server.processes")
                 for m in others}  # fmt: skip
    kind = work.split("=")[0] if "=" in work else "echo"
    no_gil = "" if gil_enabled(summary.metadata) else " on this free-threaded build (no GIL)"
    if kind == "cpu" and "," not in work:
        for m in others:
            expected = expects_parallel(m, summary.metadata)
            where = f"on {cores[m]:.1f} cores in {_processes(processes[m])}"
            if expected and ratio[m] >= 1.3:
                lines.append(f"{m} ran the CPU work in parallel{no_gil}: {ratio[m]:.2f}x the "
                             f"{base_model} loop {where}.")  # fmt: skip
            elif expected:
                lines.append(f"Unlike the expectation that {m} runs CPU work in parallel"
                             f"{no_gil}, it reached only {ratio[m]:.2f}x the {base_model} loop "
                             f"here ({where}).")  # fmt: skip
            elif expected is False and ratio[m] <= 1.15 and cores[m] <= 1.2:
                lines.append(
                    f"{m} did not speed up the CPU work ({ratio[m]:.2f}x, "
                    f"{cores[m]:.1f} cores): its requests took turns on one core."
                )
            elif expected is False:
                lines.append(
                    f"Unlike the expectation that the requests of {m} take turns on one "
                    f"core, it reached {ratio[m]:.2f}x the {base_model} loop {where}."
                )
    elif kind in WAIT_KINDS and "," not in work:
        for m in others:
            high = [level for level in summary.levels("matrix", m, work) if level >= 16]
            expected = expects_overlap(m, kind)
            if not high or expected is None:
                continue
            level = max(high)
            times = summary.rate("matrix", m, work, level) / max(
                summary.rate("matrix", base_model, work, level), 1e-9
            )
            at = f"{times:.1f}x the {base_model} loop at {level} clients"
            if expected and times >= 5:
                while_ = "While waiting" if kind == "io" else "While blocked in a call"
                lines.append(f"{while_}, {m} overlapped requests: {at}.")
            elif expected:
                lines.append(f"Unlike the expectation that {m} overlaps these waits, it "
                             f"reached only {at}.")  # fmt: skip
            elif times <= 1.5:
                lines.append(f"{m} did not overlap these waits ({at}): a call that blocks "
                             f"its one thread stalls every request in progress.")  # fmt: skip
            else:
                lines.append(f"Unlike the expectation that a blocking call stalls {m}, it "
                             f"reached {at}.")  # fmt: skip
    elif kind == "echo":
        for m in others:
            if m in MODELS and MODELS[m].hands_off:
                verdict = ("as expected, each request pays for pickling and two hops between "
                           "processes" if ratio[m] < 1 else
                           "unexpectedly, the hops between processes did not cost it")  # fmt: skip
                lines.append(f"With no work to share out, {m} answered {ratio[m]:.2f}x the "
                             f"{base_model} loop: {verdict}.")  # fmt: skip
            original = MODELS[m].variant_of if m in MODELS else None
            if original in ratio:
                lines.append(
                    f"{m} is the {original} server with one part swapped: "
                    + " against ".join(f"{name} {summary.best(name, work)[1]:,.0f} replies/s at "
                                       f"{cpu_per_reply(summary, name, work):.1f} µs of server "
                                       f"CPU per reply" for name in (m, original))
                    + f" ({ratio[m] / ratio[original]:.2f}x).")  # fmt: skip
    limited = [m for m in models if summary.limited(m, work, summary.best(m, work)[0])]
    if limited:
        lines.append(
            f"At that concurrency, the generator was the limit for "
            f"{', '.join(limited)} (it used a whole core or fell short of its rate): "
            f"those figures are how fast the generator could ask, a lower bound for "
            f"the server."
        )
    return lines


def _processes(count: float) -> str:
    return "one process" if round(count) == 1 else f"{count:.0f} processes"


def cpu_per_reply(summary: Summary, model: str, work: str) -> float:
    """Microseconds of server CPU per reply, at the level compared (cores / replies per s)."""
    level, rate = summary.best(model, work)
    return summary.figure(model, work, level, "server.cores_used") / max(rate, 1e-9) * 1e6


def sweep_findings(summary: Summary) -> list[str]:
    lines = []
    for work in summary.works("load_sweep"):
        label = work_label(work, summary.metadata)
        parts = []
        for model in summary.models("load_sweep", work):
            points = []
            for percent in summary.levels("load_sweep", model, work):
                runs = summary.groups[("load_sweep", model, work, percent)]
                points.append(
                    (
                        median([r["loadgen"]["throughput_rps"] for r in runs]),
                        median([r["loadgen"]["latency_us"]["p99"] for r in runs]),
                    )
                )
            found = knee(points)
            if found:
                parts.append(f"{model} up to {found[0]:,.0f} replies/s")
            else:
                parts.append(f"{model} {'at every load' if len(points) > 1 else 'untested'}"
                             if points and points[-1][1] <= 3 * points[0][1] else
                             f"{model} not even at the lightest load measured")  # fmt: skip
        if parts:
            lines.append(
                f"With {label} in open loop, p99 latency stayed within 3x of its "
                f"light-load value for " + "; ".join(parts) + "."
            )
    work = next(iter(summary.works("core_sweep")), None)
    if work:
        label = work_label(work, summary.metadata)
        changes = []
        for model in summary.models("core_sweep", work):
            counts = summary.levels("core_sweep", model, work)
            if len(counts) < 2:
                continue
            low = median(
                [
                    r["loadgen"]["throughput_rps"]
                    for r in summary.groups[("core_sweep", model, work, counts[0])]
                ]
            )
            high = median(
                [
                    r["loadgen"]["throughput_rps"]
                    for r in summary.groups[("core_sweep", model, work, counts[-1])]
                ]
            )
            changes.append((model, counts[0], counts[-1], low, high))  # fmt: skip
        if changes:
            lines.append(f"With {label}, going from {changes[0][1]} to {changes[0][2]} cores "
                         "took " + "; ".join(f"{m} from {lo:,.0f} to {hi:,.0f} replies/s "
                                             f"({hi / lo:.2f}x)" for m, _, _, lo, hi in changes)
                         + ".")  # fmt: skip
            for model, _, _, low, high in changes:
                gain = high / low if low else 0
                expected = expects_parallel(model, summary.metadata)
                if expected and gain < 1.3:
                    lines.append(
                        f"Unlike the expectation, {model} did not scale with "
                        f"cores here ({gain:.2f}x)."
                    )
                if expected is False and gain > 1.3:
                    lines.append(
                        f"Unlike the expectation of a flat line for requests that take "
                        f"turns on one core, {model} gained {gain:.2f}x with more cores here."
                    )
    return lines


def timeline_findings(timeline: dict[str, Any] | None) -> list[str]:
    """From the traced bursts, per model: how long the drawn (median) burst took and the range
    over all bursts, the cores busy on average over it (all its CPU time over that span: robust
    to the strip's millisecond spikes), and the median share of a core per request."""
    if not timeline:
        return []
    lines = []
    for spec, traces in timeline["traces"].items():
        parts = []
        for model in ordered(traces):
            requests = traces[model]["requests"]
            if not requests:
                continue
            shares = [r["cpu_ns"] / max(1, r["end_ns"] - r["start_ns"]) for r in requests]
            first = min(r["start_ns"] for r in requests)
            last = max(r["end_ns"] for r in requests)
            cores = sum(r["cpu_ns"] for r in requests) / max(1, last - first)
            done = (last - traces[model]["burst_ns"]) / 1e6
            spread = traces[model].get("bursts_ms") or []
            within = (f" (of {len(spread)} bursts: {min(spread):.1f}-{max(spread):.1f})"
                      if len(spread) > 1 else "")  # fmt: skip
            parts.append(f"{model} done in {done:.1f} ms{within}, {cores:.1f} cores busy on "
                         f"average, {median(shares):.0%} of a core per request")  # fmt: skip
        if parts:
            lines.append(f"In the traced burst of {timeline['burst']} requests with {spec}: "
                         + "; ".join(parts) + ".")  # fmt: skip
    return lines


def noise_finding(summary: Summary) -> list[str]:
    spreads = []
    for (kind, *_), runs in summary.groups.items():
        rates = [r["loadgen"]["throughput_rps"] for r in runs]
        if kind == "matrix" and len(rates) > 1 and median(rates) > 0:
            spreads.append((max(rates) - min(rates)) / median(rates))
    if not spreads:
        return [
            "Each point was measured once: repeat the bench (more --trials) before trusting "
            "a difference of a few tens of percent on a shared machine."
        ]
    return [
        f"Between trials of the same point, replies/s varied by {median(spreads):.0%} "
        f"(median of max-min over median; worst {max(spreads):.0%}): differences smaller "
        f"than that are noise on this machine."
    ]


def table(summary: Summary, work: str) -> list[str]:
    rows = ["| model | replies/s | clients | p50 ms | p99 ms | server cores | server CPU µs "
            "per reply | processes | memory MB | generator cores | lost |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for model in summary.models("matrix", work):
        level, rate = summary.best(model, work)
        lost = sum(r["loadgen"]["lost"] for r in summary.groups[("matrix", model, work, level)])
        mark = " (generator-limited)" if summary.limited(model, work, level) else ""
        rows.append(
            f"| {model} | {rate:,.0f}{mark} | {level} "
            f"| {summary.figure(model, work, level, 'loadgen.latency_us.p50') / 1000:.2f} "
            f"| {summary.figure(model, work, level, 'loadgen.latency_us.p99') / 1000:.2f} "
            f"| {summary.figure(model, work, level, 'server.cores_used'):.2f} "
            f"| {cpu_per_reply(summary, model, work):,.1f} "
            f"| {summary.figure(model, work, level, 'server.processes'):.0f} "
            f"| {summary.figure(model, work, level, 'server.peak_rss_bytes') / 2**20:,.0f} "
            f"| {summary.figure(model, work, level, 'loadgen.generator.cpu_cores'):.2f} "
            f"| {lost} |"
        )
    return rows


def interpreter_sentence(metadata: dict[str, Any]) -> str:
    """Which interpreter ran the servers, when the bench recorded it (``--python``)."""
    server = metadata.get("server_python")
    if not server:
        return f"The servers ran on the generator's Python {metadata.get('python')}."
    gil = "with the GIL" if server.get("gil_enabled", True) else "with the GIL disabled"
    build = "free-threaded build" if server.get("free_threaded_build") else "GIL build"
    optimized = "PGO/LTO-optimised" if server.get("optimized") else "not PGO/LTO-optimised"
    return (f"The servers ran on {server.get('implementation', '?')} {server.get('version')} "
            f"(`{server.get('executable')}`: {build}, {gil}, {optimized}); the generator on "
            f"Python {metadata.get('python')}.")  # fmt: skip


def render(data: dict[str, Any], figures: list[str]) -> str:
    summary = Summary(data)
    metadata = data["metadata"]
    settings = metadata.get("settings", {})
    measured = summary.models()
    capped = [m for m in measured if m in MODELS and MODELS[m].workers_meaning == "cap"]
    limits = sorted({MODELS[m].default_workers for m in capped})
    own = (f"; {', '.join(capped)} keep their own cap of "
           f"{' or '.join(map(str, limits))} requests in progress" if capped else "")  # fmt: skip
    lines = [
        f"# UDP echo server: {len(measured)} concurrency models compared",
        "",
        f"Measured {str(metadata.get('date', '?')).replace('T', ' ')} "
        f"on {metadata.get('cpu_model')} ({metadata.get('cores')} cores), {metadata.get('os')}; "
        f"Python {metadata.get('python')}; "
        + "".join(f"{name} {version}, " for name, version in packages(metadata).items())
        + "commit "
        f"{(metadata.get('git_commit') or 'unknown')[:10]}"
        f"{' (with local changes)' if metadata.get('git_dirty') else ''}.",
        "",
        interpreter_sentence(metadata),
        "",
        f"Command: `{metadata.get('command')}`. {settings.get('trials')} trial(s) of "
        f"{settings.get('duration')} s after {settings.get('warmup')} s of warm-up per point; "
        f"`--workers {settings.get('workers')}` for every model with workers{own}.",
    ]
    for model, reason in metadata.get("skipped", {}).items():
        lines.append(f"Not measured: {model}, because {reason}.")
    for spec, figures_ in metadata.get("calibration", {}).items():
        lines.append(f"`{spec}` is {figures_['iterations']:,} iterations of pure Python for every "
                     f"model (calibrated once: {figures_['ms']:g} ms at this machine's best "
                     f"speed).")  # fmt: skip
    lines += ["", "## What this shows", ""]
    for work in summary.works():
        lines += [f"- {sentence}" for sentence in workload_findings(summary, work)]
    lines += [f"- {sentence}" for sentence in sweep_findings(summary)]
    lines += [f"- {sentence}" for sentence in timeline_findings(data.get("timeline"))]
    lines += [f"- {sentence}" for sentence in noise_finding(summary)]
    for work in summary.works():
        lines += ["", f"## {work_label(work, metadata)}", "", *table(summary, work)]
    if figures:
        lines += ["", "## Figures", ""]
        for name in figures:
            lines += [f"![{CAPTIONS.get(name, name)}]({name}.png)", "",
                      f"*{CAPTIONS.get(name, name)}*", ""]  # fmt: skip
    return "\n".join(lines).rstrip() + "\n"


def write_report(results_path: Path, out: Path | None = None) -> Path:
    data = load(results_path)
    out = out or Path(results_path).parent
    out.mkdir(parents=True, exist_ok=True)
    figures = [name for name in (*FIGURES, "timeline") if (out / f"{name}.png").exists()]
    timeline = out / "timeline.json"
    if timeline.exists():
        data = {**data, "timeline": json.loads(timeline.read_text(encoding="utf-8"))}
    path = out / "report.md"
    path.write_text(render(data, figures), encoding="utf-8")
    return path
