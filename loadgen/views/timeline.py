"""The timeline drawn: who runs when, from a saved timeline.json alone.

    python -m loadgen timeline --from results/latest/timeline.json     # redraw a saved one

A panel per model and workload, one row per worker (or task) that handled a request, one bar
per request from the start to the end of its work, dark where its thread computed and pale where
it did not (checkpoints in the trace tell which), and under it a strip of how many cores were
busy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loadgen.analysis.results import (
    GilTrace,
    Metadata,
    Timeline,
    Trace,
    TracedRequest,
    load_timeline,
)
from loadgen.analysis.summary import ordered
from loadgen.views import svg
from loadgen.views.figures import footnote, style


def pieces(request: TracedRequest) -> list[tuple[int, int, float]]:
    """A request's work as ``(start_ns, end_ns, share of a core)`` pieces.

    With checkpoints (traced CPU work), one piece between each two, so a thread that waited for
    the GIL in the middle of a request shows it; otherwise (waiting work, an older trace) one
    piece with the request's average share. Time outside the checkpoints (decoding, an ``io=``
    wait after the computation) used next to no CPU.
    """
    start, end = request.start_ns, request.end_ns
    marks = request.checkpoints
    if len(marks) < 2:
        return [(start, end, request.core_share)]
    result = [(start, marks[0][0], 0.0)] if marks[0][0] > start else []
    for (t0, c0), (t1, c1) in zip(marks, marks[1:], strict=False):
        result.append((t0, t1, min(1.0, (c1 - c0) / max(1, t1 - t0))))
    if end > marks[-1][0]:
        result.append((marks[-1][0], end, 0.0))
    return result


def cores_busy(
    requests: tuple[TracedRequest, ...] | list[TracedRequest], t0: int, cores: int
) -> tuple[list[float], list[float]]:
    """Cores busy over time, in ms since ``t0``: a step function, summing every piece's share.

    Capped at the cores there are: a piece in which a process was descheduled spreads its bit
    of CPU over the whole piece, so overlapping pieces can add up to a little more.
    """
    changes: dict[int, float] = {t0: 0.0}
    for request in requests:
        for start, end, piece_share in pieces(request):
            changes[start] = changes.get(start, 0.0) + piece_share
            changes[end] = changes.get(end, 0.0) - piece_share
    times, busy, level = [], [], 0.0
    for t in sorted(changes):
        level += changes[t]
        times.append((t - t0) / 1e6)
        busy.append(min(cores, max(0.0, level)))
    return times, busy


READING = (
    "How to read it: dark bars side by side ran in parallel, each on its own core (the strip "
    "above 1). Bars one after another, or overlapping but dark in turns, took turns on one core "
    "(the strip at 1). A pale bar is waiting, which needs no core: many requests can wait at "
    "once. The % on a bar is its CPU time over its wall time."
)


def column_title(spec: str, data: Timeline, metadata: Metadata | None) -> str:
    """The workload, the burst, and how the computation compares with one turn on the GIL."""
    work = data.work(spec)
    turn = data.gil_switch_interval_s
    title = f"{work.spec}: a burst of {data.burst} requests"
    if data.repeat > 1:
        title += f" (the median of {data.repeat})"
    if work.cpu_seconds and metadata and not metadata.gil_enabled:
        return f"{title}\n(computing; no GIL on this build: threads need not take turns)"
    if work.cpu_seconds:
        longer = "longer" if work.cpu_seconds > turn else "shorter"
        return f"{title}\n(computing, {longer} than a turn on the GIL: {turn * 1e3:g} ms)"
    if work.block_seconds and not work.cpu_iterations:
        return f"{title}\n(blocked in a call that never yields, no computing)"
    if work.io_seconds and not work.cpu_iterations:
        return f"{title}\n(waiting, no computing)"
    return title


def draw(data: Timeline, metadata: Metadata | None = None, gil: bool = False) -> Any:
    """The whole figure: a column per workload, two rows (bars, cores strip) per model; with
    ``gil``, the bursts sampled for the GIL, and under the bars who held it when."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    every = ({spec: {m: g.trace for m, g in sampled.items()} for spec, sampled in data.gil.items()}
             if gil else data.traces)  # fmt: skip
    works = list(every)
    models = ordered({m for traces in every.values() for m in traces})
    cores = data.cores or 1
    heights = [ratio for _ in models for ratio in (3, 1)]
    figure, axes = plt.subplots(
        2 * len(models), len(works), figsize=(5.4 * len(works) + 1.4, 2.3 * len(models) + 1.8),
        gridspec_kw={"height_ratios": heights}, squeeze=False,
    )  # fmt: skip
    for column, spec in enumerate(works):
        traces = every[spec]
        span = max((r.end_ns - t.burst_ns for t in traces.values()
                    for r in t.requests), default=1) / 1e6  # fmt: skip
        for row, model in enumerate(models):
            bars, strip = axes[2 * row][column], axes[2 * row + 1][column]
            trace = traces.get(model)
            if not trace or not trace.requests:
                bars.set_axis_off()
                strip.set_axis_off()
                continue
            lanes = draw_requests(bars, model, trace, span)
            if gil:
                draw_held(strip, model, data.gil[spec][model], span, lanes)
            else:
                draw_cores(strip, model, trace, span, cores)
        axes[0][column].set_title(column_title(spec, data, metadata), fontsize=10)
        axes[-1][column].set_xlabel("ms since the burst was sent")
    explain(figure, metadata, cores, gil)
    return figure


def draw_requests(bars: Any, model: str, trace: Trace, span: float) -> list:
    """A lane per worker (or per task where requests share a thread), a bar per request;
    returns the lanes, top first."""
    colour, _ = style(model)
    t0, requests = trace.burst_ns, trace.requests
    by_task = all(r.lane is not None for r in requests)

    def lane_of(r: TracedRequest) -> int | str | None:
        return r.lane if by_task else r.worker

    lanes = list(dict.fromkeys(lane_of(r) for r in sorted(requests, key=lambda r: r.start_ns)))
    labels = [f"task {i + 1}" if by_task else str(lane) for i, lane in enumerate(lanes)]
    for r in requests:
        lane = lanes.index(lane_of(r))
        start, end = (r.start_ns - t0) / 1e6, (r.end_ns - t0) / 1e6
        waited = (r.received_ns - t0) / 1e6
        bars.plot([waited, start], [lane, lane], color="#999999", linewidth=1)
        for piece_start, piece_end, piece_share in pieces(r):
            bars.barh(lane, (piece_end - piece_start) / 1e6, left=(piece_start - t0) / 1e6,
                      height=0.7, color=colour, alpha=0.15 + 0.85 * piece_share,
                      linewidth=0)  # fmt: skip
        # All but transparent, not unfilled: a hover title needs a painted fill to catch it.
        outline = bars.barh(lane, max(end - start, span / 400), left=start, height=0.7,
                            facecolor=(1, 1, 1, 0.01), edgecolor=colour, linewidth=0.8)  # fmt: skip
        named = labels[lane] if by_task else f"worker {labels[lane]}"
        svg.tip_artist(bars, outline[0], f"{model}, {named}: received at "
                       f"{waited:.1f} ms, served {start:.1f}-{end:.1f} ms, "
                       f"{r.core_share:.0%} of a core")  # fmt: skip
        if end - start > span / 12:
            bars.text((start + end) / 2, lane, f"{r.core_share:.0%}", ha="center", va="center",
                      fontsize=7, bbox={"facecolor": "white", "alpha": 0.7, "linewidth": 0,
                                        "pad": 1})  # fmt: skip
    bars.set_yticks(range(len(lanes)), labels, fontsize=7)
    bars.set_ylim(-0.6, len(lanes) - 0.4)
    bars.invert_yaxis()
    bars.set_xlim(0, span * 1.02)
    bars.tick_params(labelbottom=False)
    bars.set_ylabel(model, fontsize=10, color=colour, fontweight="bold")
    return lanes


def draw_held(strip: Any, model: str, sampled: GilTrace, span: float, lanes: list) -> None:
    """The strip under the bars: a line per worker, dark where its thread held a GIL."""
    colour, _ = style(model)
    workers = [lane for lane in lanes if lane in sampled.held] or list(sampled.held)
    for row, worker in enumerate(workers):
        spans = [((a - sampled.trace.burst_ns) / 1e6, (b - a) / 1e6)
                 for a, b in sampled.held[worker]]  # fmt: skip
        strip.broken_barh(spans, (row - 0.35, 0.7), color=colour)
    strip.set_yticks(range(len(workers)), [str(w) for w in workers], fontsize=6)
    strip.set_ylim(-0.6, max(len(workers), 1) - 0.4)
    strip.invert_yaxis()
    strip.set_xlim(0, span * 1.02)
    strip.set_ylabel("GIL", fontsize=7)
    strip.tick_params(labelsize=7)


def draw_cores(strip: Any, model: str, trace: Trace, span: float, cores: int) -> None:
    """The strip under the bars: how many cores were busy, against the one-core line."""
    colour, _ = style(model)
    xs, busy = cores_busy(trace.requests, trace.burst_ns, cores)
    strip.fill_between(xs, busy, step="post", color=colour, alpha=0.6)
    strip.axhline(1, color="#333333", linestyle="--", linewidth=0.8)
    strip.set_ylim(0, cores + 0.3)
    strip.set_yticks(sorted({0, 1, cores}))
    strip.set_xlim(0, span * 1.02)
    strip.set_ylabel("cores", fontsize=7)
    strip.tick_params(labelsize=7)


GIL_READING = (
    "How to read it: under each model's bars, a line per worker, dark while its thread held a "
    "GIL, as Python 3.15's profiler saw it from outside, 10,000 times a second. Threads share "
    "one GIL: their stretches take turns. Forked workers are not drawn (the profiler watches one "
    "process). The profiler takes a core itself: these bursts run slower than timeline.png's."
)


def explain(figure: Any, metadata: Metadata | None, cores: int, gil: bool = False) -> None:
    """Legend, title, how to read it and the footnote, in heights that follow the figure's
    width: a narrow figure (one workload) wraps them onto more lines."""
    import textwrap

    from matplotlib.patches import Patch

    legend = [
        Patch(facecolor="#555555", alpha=1.0, label="dark: computing on a core"),
        Patch(facecolor="#555555", alpha=0.3,
              label="pale: not computing (waiting for the GIL, a core, or I/O)"),
        Patch(facecolor="white", edgecolor="#999999", label="grey line: received, not started"),
    ]  # fmt: skip
    width = figure.get_figwidth()
    narrow = width < 10
    under = "who held the GIL" if gil else "counts the cores busy"
    title = textwrap.fill("Who runs when: each bar is one request, from the start to the end "
                          f"of its work, one row per worker; the strip under it: {under}",
                          int(width * 9.5))  # fmt: skip
    reading = textwrap.fill(GIL_READING if gil else READING, int(width * 14))
    inch = 1 / figure.get_figheight()
    top = (0.3 + 0.22 * title.count("\n")) * inch  # the title's lines, then the legend's
    figure.suptitle(title, x=0.01, y=1 - 0.08 * inch, ha="left", va="top", fontsize=12)
    figure.legend(handles=legend, loc="upper left", bbox_to_anchor=(0.01, 1 - top),
                  fontsize=9, ncols=1 if narrow else 3, frameon=False)  # fmt: skip
    legend_height = (0.55 if narrow else 0.2) * inch
    bottom = (0.45 + 0.16 * (reading.count("\n") + 1)) * inch
    figure.text(0.01, bottom - 0.05 * inch, reading, fontsize=9, ha="left", va="top")
    if metadata:
        footnote(figure, metadata, f"cores available: {cores}")
    figure.tight_layout(rect=(0, bottom, 1, 1 - top - legend_height))


def redraw(saved: Path, out: Path | None = None) -> Path:
    """Draw a saved timeline.json again (into its own folder unless ``out`` is given)."""
    import matplotlib.pyplot as plt

    data = load_timeline(saved)
    out = out or Path(saved).parent
    out.mkdir(parents=True, exist_ok=True)
    drawn = {"timeline": draw(data, data.metadata)}
    if data.gil:  # the servers ran 3.15+: the bursts sampled for the GIL, in a figure of their own
        drawn["timeline_gil"] = draw(data, data.metadata, gil=True)
    for name, figure in drawn.items():
        figure.savefig(out / f"{name}.png", dpi=120)
        svg.save(figure, out / f"{name}.svg")
        plt.close(figure)
    return out / "timeline.png"
