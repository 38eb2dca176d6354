"""Figures from a results.json alone (so a file from another machine can be redrawn).

    python -m loadgen plot results/latest/results.json [--out DIR]

Every figure uses the colour (Okabe-Ito, colour-blind safe) and marker the model registry gives
each model (``servers.MODELS``), shows trials as median with min-max, marks generator-limited
points with a hollow marker, and is stamped with the machine, Python, date and settings it came
from.
"""

from __future__ import annotations

import math
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from loadgen.analysis.expectations import EXPECTED, efficiency, other_cores  # noqa: E402
from loadgen.analysis.results import Metadata, Results, Run, RunKind, load  # noqa: E402
from loadgen.analysis.summary import knee, ordered, spread  # noqa: E402
from loadgen.generator import stats  # noqa: E402
from loadgen.views import svg  # noqa: E402
from servers import MODELS  # noqa: E402

FALLBACK = ("#777777", "x")  # a model this version does not know (a file from elsewhere)
SPECTRUM_PERCENTILES = [0, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 99.999]
FIGURES = ("throughput", "cores", "latency_load", "spectrum", "scaling")


def style(model: str) -> tuple[str, str]:
    """The colour and marker the registry gives ``model``."""
    known = MODELS.get(model)
    return (known.colour, known.marker) if known else FALLBACK


def footnote(figure: Figure, metadata: Metadata, note: str = "") -> None:
    settings = metadata.settings
    parts = [
        f"{metadata.cpu_model}, {metadata.cores or '?'} cores",
        f"servers on Python {metadata.server_version}"
        + ("" if metadata.gil_enabled else " without the GIL")
        + "".join(f", {name} {version}" for name, version in metadata.packages.items()),
        metadata.date[:16].replace("T", " "),
    ]
    if "trials" in settings:
        parts.append(f"{settings['trials']} trial(s) of {settings.get('duration', '?')} s")
    if "workers" in settings:
        parts.append(f"--workers {settings['workers']}")
    text = "; ".join(parts + ([note] if note else []))
    width = int(figure.get_figwidth() * 17)  # characters of 7-point text that fit across
    figure.text(0.01, 0.005, "\n".join(textwrap.wrap(text, width)), fontsize=7,
                color="#555555", ha="left", va="bottom")  # fmt: skip


def finish(
    figure: Figure, data: Results, legend_axis: Any, title: str, note: str,
    bottom: float = 0.04, ylabel: tuple[Any, str] | None = None,
) -> Figure:  # fmt: skip
    """Legend outside the last panel, title, footnote (machine, Python, settings), layout;
    ``ylabel``: (the axis, its label) where the figure's panels share one."""
    if ylabel:
        ylabel[0].set_ylabel(ylabel[1])
    outside_legend(legend_axis)
    figure.suptitle("\n".join(textwrap.wrap(title, int(figure.get_figwidth() * 10))))
    footnote(figure, data.metadata, note)
    figure.tight_layout(rect=(0, bottom, 1, 1))
    return figure


def plain_ticks(axis: Any) -> None:
    """Log axes labelled 20, 50, 100 rather than 2x10^1: easier to read, and no overlaps."""
    for which in (axis.xaxis, axis.yaxis):
        which.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        which.set_minor_formatter(matplotlib.ticker.NullFormatter())


def outside_legend(axis: Any) -> None:
    """To the right of the last panel, where it never covers a line."""
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)


def _limited_legend(axis: Any) -> None:
    axis.plot([], [], linestyle="none", marker="o", markerfacecolor="white",
              markeredgecolor="#333333", label="hollow: generator-limited")  # fmt: skip


def throughput_figure(data: Results, runs: list[Run]) -> Figure:
    works = list(dict.fromkeys(run.work for run in runs))
    figure, axes = plt.subplots(1, len(works), figsize=(1.8 + 4.6 * len(works), 4.4), squeeze=False)
    for axis, work in zip(axes[0], works, strict=True):
        by_model: dict[str, dict[int, list[Run]]] = defaultdict(lambda: defaultdict(list))
        for run in runs:
            if run.work == work:
                by_model[run.model][run.loadgen.concurrency].append(run)
        for model in ordered(by_model):
            colour, marker = style(model)
            levels = sorted(by_model[model])
            figures = [spread([r.loadgen.throughput_rps for r in by_model[model][c]])
                       for c in levels]  # fmt: skip
            medians = [f[0] for f in figures]
            axis.plot(levels, medians, color=colour, marker=marker, label=model)
            axis.fill_between(levels, [f[1] for f in figures], [f[2] for f in figures],
                              color=colour, alpha=0.15, linewidth=0)  # fmt: skip
            for level, (median, low, high) in zip(levels, figures, strict=True):
                svg.tip(axis, level, median, f"{model}, {work.spec}, {level} clients: "
                        f"{median:,.0f} replies/s (trials {low:,.0f}-{high:,.0f})")  # fmt: skip
                if any(r.generator_limited for r in by_model[model][level]):
                    axis.plot(level, median, marker=marker, markersize=9, color="white",
                              markeredgecolor=colour, zorder=3)  # fmt: skip
        axis.set_xscale("log", base=2)
        axis.set_xticks(sorted({r.loadgen.concurrency for r in runs if r.work == work}))
        axis.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.set_ylim(bottom=0)
        axis.set_title(work.spec)
        axis.set_xlabel("clients in flight (closed loop)")
        axis.grid(alpha=0.3)
    _limited_legend(axes[0][-1])
    return finish(figure, data, axes[0][-1],
                  "Throughput against concurrency: who keeps up as clients are added",
                  "line: median of trials, band: min-max",
                  ylabel=(axes[0][0], "verified replies per second"))  # fmt: skip


def cores_figure(data: Results, runs: list[Run]) -> Figure:
    works = list(dict.fromkeys(run.work for run in runs))
    models = ordered({run.model for run in runs})
    # Wide enough for a readable bar per model in every group, the legend to the right.
    figure, axis = plt.subplots(figsize=(3.6 + 0.42 * len(models) * len(works), 4.8))
    width = 0.8 / len(models)
    for i, model in enumerate(models):
        colour, _ = style(model)
        for j, work in enumerate(works):
            mine = [r for r in runs if r.model == model and r.work == work]
            if not mine:
                continue
            top = max(r.loadgen.concurrency for r in mine)
            values = [r.server.cores_used for r in mine if r.loadgen.concurrency == top]
            median, low, high = spread(values)
            x = j + (i - (len(models) - 1) / 2) * width
            bars = axis.bar(x, median, width * 0.92, color=colour,
                            label=model if j == 0 else None)  # fmt: skip
            svg.tip_artist(axis, bars[0], f"{model}, {work.spec}, {top} clients: {median:.2f} "
                        f"cores (trials {low:.2f}-{high:.2f})")  # fmt: skip
            axis.errorbar(x, median, yerr=[[median - low], [high - median]], color="#333333",
                          capsize=2, linewidth=1)  # fmt: skip
    cores = data.metadata.cores_available or data.metadata.cores or 1
    axis.axhline(1, color="#333333", linestyle="--", linewidth=1,
                 label="1 core: one thread of\nPython at a time")  # fmt: skip
    axis.axhline(cores, color="#333333", linestyle=":", linewidth=1,
                 label=f"{cores} cores: the whole machine")  # fmt: skip
    axis.set_xticks(range(len(works)), [w.spec for w in works])
    axis.set_xlim(-0.5, len(works) - 0.5)
    axis.set_ylabel("server CPU, in cores (at the highest concurrency)")
    axis.set_ylim(0, cores * 1.15)
    axis.grid(axis="y", alpha=0.3)
    return finish(figure, data, axis,
                  "Cores used by each server: above the 1-core line means parallel execution",
                  "bar: median, whisker: min-max")  # fmt: skip


def _ms(microseconds: float | None) -> float:
    """Milliseconds; NaN (a gap in the line) for a run in which no reply came back."""
    return math.nan if microseconds is None else microseconds / 1000


def latency_load_figure(data: Results, runs: list[Run]) -> Figure:
    works = list(dict.fromkeys(run.work for run in runs))
    figure, axes = plt.subplots(
        2, len(works), figsize=(2.6 + 4.6 * len(works), 7.4), squeeze=False, sharex="col"
    )
    for column, work in enumerate(works):
        for model in ordered({r.model for r in runs if r.work == work}):
            colour, marker = style(model)
            mine = sorted((r for r in runs if r.work == work and r.model == model),
                          key=lambda r: r.offered_percent or 0)  # fmt: skip
            rates = [r.loadgen.throughput_rps for r in mine]
            for row, key in enumerate(("p50", "p99")):
                axis = axes[row][column]
                values = [_ms(getattr(r.loadgen.latency_us, key)) for r in mine]
                axis.plot(rates, values, color=colour, marker=marker, label=model)
                for run, rate, value in zip(mine, rates, values, strict=True):
                    svg.tip(axis, rate, value, f"{model}, {work.spec}, "
                            f"{run.offered_percent or 0:g}% load: {key} {value:.2f} ms at "
                            f"{rate:,.0f} replies/s")  # fmt: skip
                    if run.generator_limited:
                        axis.plot(rate, value, marker=marker, markersize=9, color="white",
                                  markeredgecolor=colour, zorder=3)  # fmt: skip
                found = knee(list(zip(rates, values, strict=True))) if key == "p99" else None
                if found:
                    axis.plot(*found, marker="*", markersize=15, color=colour,
                              markeredgecolor="black", zorder=4)  # fmt: skip
        spread_of_rates = [r.loadgen.throughput_rps for r in runs if r.work == work]
        for row, key in enumerate(("p50", "p99")):
            axis = axes[row][column]
            axis.set_yscale("log")
            if max(spread_of_rates) > 10 * max(min(spread_of_rates), 1):
                axis.set_xscale("log")
            axis.grid(alpha=0.3, which="both")
            plain_ticks(axis)
            if column == 0:
                axis.set_ylabel(f"{key} latency, ms (log)")
        axes[0][column].set_title(work.spec)
        axes[1][column].set_xlabel("achieved replies per second (open loop)")
    axis = axes[0][-1]
    axis.plot(
        [],
        [],
        linestyle="none",
        marker="*",
        markersize=12,
        color="#333333",
        label=f"star (p99): knee, last load\nbefore p99 > {EXPECTED.knee_factor:g}x its "
        "light-load value",
    )
    _limited_legend(axis)
    return finish(figure, data, axis,
                  "Latency against offered load: where each model's queue starts to grow "
                  "(loads: 25% to 120% of its own capacity)",
                  "latency from the scheduled send (coordinated omission)",
                  bottom=0.03)  # fmt: skip


def spectrum_figure(data: Results, runs: list[Run]) -> Figure:
    works = list(dict.fromkeys(run.work for run in runs))
    figure, axes = plt.subplots(1, len(works), figsize=(1.8 + 4.6 * len(works), 4.4), squeeze=False)
    for axis, work in zip(axes[0], works, strict=True):
        mine = [r for r in runs if r.work == work]
        level = max(r.loadgen.concurrency for r in mine)
        for model in ordered({r.model for r in mine}):
            colour, marker = style(model)
            histogram = stats.merge([r.loadgen.histogram for r in mine
                                     if r.model == model
                                     and r.loadgen.concurrency == level])  # fmt: skip
            if histogram.get_total_count() == 0:
                continue
            values = histogram.get_percentile_to_value_dict(SPECTRUM_PERCENTILES)
            xs = [1 / (1 - p / 100) for p in SPECTRUM_PERCENTILES]
            (line,) = axis.plot(xs, [values[p] / 1000 for p in SPECTRUM_PERCENTILES],
                                color=colour, marker=marker, markersize=4, label=model)  # fmt: skip
            svg.tip_artist(axis, line, f"{model}, {work.spec}, {level} clients:\n" + "\n".join(
                f"p{p:g}: {values[p] / 1000:.2f} ms" for p in SPECTRUM_PERCENTILES))  # fmt: skip
        ticks = [0, 90, 99, 99.9, 99.99, 99.999]
        axis.set_xscale("log")
        axis.set_xticks([1 / (1 - p / 100) for p in ticks], [f"{p:g}%" for p in ticks])
        axis.minorticks_off()
        axis.set_yscale("log")
        axis.set_xlabel("percentile")
        axis.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_title(f"{work.spec}, {level} clients in flight")
        axis.grid(alpha=0.3, which="both")
    return finish(figure, data, axes[0][-1],
                  "Latency by percentile: the typical request and the unlucky one",
                  "all trials' HdrHistograms merged",
                  ylabel=(axes[0][0], "latency, ms (log scale)"))  # fmt: skip


def scaling_figure(data: Results, runs: list[Run]) -> Figure:
    figure, axis = plt.subplots(figsize=(8.0, 4.8))
    for model in ordered({r.model for r in runs}):
        colour, marker = style(model)
        counts = sorted({r.cores_allowed for r in runs if r.model == model})
        figures = [spread([r.loadgen.throughput_rps for r in runs
                           if r.model == model and r.cores_allowed == c])
                   for c in counts]  # fmt: skip
        axis.errorbar(counts, [f[0] for f in figures],
                      yerr=[[f[0] - f[1] for f in figures], [f[2] - f[0] for f in figures]],
                      color=colour, marker=marker, capsize=3, label=model)  # fmt: skip
        for count, (median, low, high) in zip(counts, figures, strict=True):
            svg.tip(axis, count, median, f"{model}, {count} core{'s' if count > 1 else ''}: "
                    f"{median:,.0f} replies/s (trials {low:,.0f}-{high:,.0f})")  # fmt: skip
    counts = sorted({r.cores_allowed for r in runs})
    axis.set_xticks(counts)
    axis.set_xlabel("cores the server may use (sched_setaffinity)")
    axis.set_ylabel("verified replies per second")
    axis.set_ylim(bottom=0)
    axis.grid(alpha=0.3)
    work = runs[0].work.spec
    concurrency = runs[0].loadgen.concurrency
    axis.set_title(f"Throughput against cores ({work}): a model that runs in parallel climbs")
    outside_legend(axis)
    footnote(figure, data.metadata, f"closed loop, {concurrency} clients")
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    return figure


def machine_figure(data: Results) -> Figure | None:
    """The machine during the run, in three panels: what it delivered at each reading between
    rounds (its capacity, in cores' worth of the servers' work); then, over every run in the
    order measured (attempts measured again included), the work efficiency of each run with CPU
    work, and the cores that processes outside the bench used and the CPU time stolen: the
    evidence the bench judged a run disturbed by. None: a file with none of it."""
    runs = [run for run in data.runs if run.machine is not None]
    if not data.probes and not runs:
        return None
    figure, (top, middle, bottom) = plt.subplots(3, 1, figsize=(8.0, 7.4))
    cores = data.metadata.cores_available or data.metadata.cores or 1
    _capacity_panel(top, data, cores)
    middle.sharex(bottom)  # one run, one place, in both
    _efficiency_panel(middle, data)
    _outside_panel(bottom, data, cores)
    footnote(figure, data.metadata)
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    return figure


def _capacity_panel(axis: Any, data: Results, cores: int) -> None:
    probes = data.probes
    if probes:
        at = [probe.at_s / 60 for probe in probes]
        axis.plot(at, [probe.capacity for probe in probes], marker="o", color="#0072B2",
                  label="capacity, cores' worth")  # fmt: skip
        for probe, x in zip(probes, at, strict=True):
            svg.tip(axis, x, probe.capacity, f"{x:.1f} min, before round {probe.trial or 0}: "
                    f"{probe.workers} processes did {probe.capacity:.2f}x one")  # fmt: skip
        axis.axhline(cores, color="#333333", linestyle=":", linewidth=1, label=f"{cores} cores")
        outside_legend(axis)
    else:
        axis.text(0.5, 0.5, "not read during this run", transform=axis.transAxes, ha="center")
    axis.set_ylim(0, cores * 1.2)
    axis.set_xlabel("minutes into the bench")
    axis.set_ylabel("cores' worth")
    axis.set_title("What the machine delivered, read between rounds", fontsize=10)
    axis.grid(alpha=0.3)


def run_name(run: Run) -> str:
    """A run's point named for a reader: 'threads, cpu=2ms, 64 clients'."""
    level = run.level
    at = {RunKind.MATRIX: f"{level} client{'' if level == 1 else 's'}",
          RunKind.LOAD_SWEEP: f"{level:g}% load",
          RunKind.CORE_SWEEP: f"{level} core{'' if level == 1 else 's'}"}[run.kind]  # fmt: skip
    return f"{run.model}, {run.work.spec}, {at}"


def _run_name(number: int, run: Run) -> str:
    again = f", attempt {run.attempt + 1}" if run.attempt else ""
    return f"run {number}: {run_name(run)}{again}"


def _efficiency_panel(axis: Any, data: Results) -> None:
    """Each CPU run's work efficiency; an attempt measured again, as a red cross."""
    speed, counted = data.metadata.iterations_per_second, {id(run) for run in data.counted}
    found = [(n, run, done) for n, run in enumerate(data.runs, 1)
             if (done := efficiency(run, speed)) is not None]  # fmt: skip
    if not found:
        axis.text(0.5, 0.5, "no run with CPU work", transform=axis.transAxes, ha="center")
    for again in (False, True):
        shown = [(n, done) for n, run, done in found if (id(run) not in counted) == again]
        if shown:
            axis.plot(*zip(*shown, strict=True), linestyle="none", markersize=4 + 2 * again,
                      marker="x" if again else "o", color="#D55E00" if again else "#0072B2",
                      label="measured again" if again else "counted")  # fmt: skip
    for n, run, done in found:
        if done < EXPECTED.efficiency or id(run) not in counted:  # titles where it matters
            svg.tip(axis, n, done, f"{_run_name(n, run)}: work efficiency {done:.2f}", size=7)
    axis.axhline(EXPECTED.efficiency, color="#333333", linestyle="--", linewidth=1,
                 label="disturbed below this")  # fmt: skip
    axis.set_ylim(0, 1.3)
    axis.set_ylabel("work efficiency")
    axis.set_title("How fast each run did its CPU work, against the calibration", fontsize=10)
    axis.grid(axis="y", alpha=0.3)
    if found:
        outside_legend(axis)


def _outside_panel(axis: Any, data: Results, cores: int) -> None:
    """Each run's cores used outside the bench and stolen, numbered as in the panel above."""
    numbered = [(n, run) for n, run in enumerate(data.runs, 1) if run.machine is not None]
    order, runs = [n for n, _ in numbered], [run for _, run in numbered]
    others = [max(0.0, other_cores(run) or 0.0) for run in runs]
    steal = [(run.machine.steal_share or 0.0) * cores for run in runs]  # type: ignore[union-attr]
    axis.plot(order, others, color="#CC79A7", linewidth=1, label="others' cores")
    axis.plot(order, steal, color="#D55E00", linewidth=1, label="stolen, cores")
    for n, run, other, stolen in zip(order, runs, others, steal, strict=True):
        if other + stolen > EXPECTED.other_cores:  # a title for each busy run, not every run
            svg.tip(axis, n, max(other, stolen), f"{_run_name(n, run)}: others {other:.2f} "
                    f"cores, stolen {stolen:.2f}", size=6)  # fmt: skip
    axis.axhline(EXPECTED.other_cores, color="#333333", linestyle="--", linewidth=1,
                 label="busy above this")  # fmt: skip
    axis.set_xlabel("runs, in the order measured")
    axis.set_ylabel("cores")
    axis.set_title("What else used the machine during each run", fontsize=10)
    axis.grid(axis="y", alpha=0.3)
    outside_legend(axis)


# Each figure, the kind of runs it draws, and what draws it (given those runs, never none).
BUILDERS = {
    "throughput": (RunKind.MATRIX, throughput_figure),
    "cores": (RunKind.MATRIX, cores_figure),
    "latency_load": (RunKind.LOAD_SWEEP, latency_load_figure),
    "spectrum": (RunKind.MATRIX, spectrum_figure),
    "scaling": (RunKind.CORE_SWEEP, scaling_figure),
}


def plot_all(results_path: Path, out: Path | None = None) -> list[Path]:
    """Draw every figure the data allows; return the PNG paths written (SVG beside each)."""
    data = load(results_path)
    out = out or Path(results_path).parent
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (kind, build) in BUILDERS.items():
        runs = data.runs_of(kind)
        if not runs:
            continue
        figure = build(data, runs)
        figure.savefig(out / f"{name}.png", dpi=130)
        svg.save(figure, out / f"{name}.svg")
        plt.close(figure)
        written.append(out / f"{name}.png")
    return written
