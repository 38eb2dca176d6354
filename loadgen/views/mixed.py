"""The mixed-traffic experiment drawn and told, from ``mixed.json`` alone.

    python -m loadgen mixed-report results/latest/mixed.json [--out DIR]

``mixed.png``: left, each model's fast-class p99 alone (hollow) and beside the slow class
(filled; the bar is the range over the rounds), against two lines: one slow request (the slow
class's own p50) and the switch interval; right, for models whose threads share one GIL, the
fast p99 and the slow class's p50 against the switch interval. Drawn as SVG (report.html),
every point names its figures on hover. ``findings`` are the sentences, computed from the data
and the registry's traits (``analysis.mixed.expected``).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from loadgen.analysis.mixed import (  # noqa: E402
    Expected,
    MixedResults,
    MixedRun,
    Spread,
    expected,
    load,
)
from loadgen.generator.result import ClientResult  # noqa: E402
from loadgen.views.figures import plain_ticks, style  # noqa: E402
from loadgen.views.svg import tip  # noqa: E402

# Beside the slow class, the fast p99 of a model that takes turns on one thread should be at
# least this share of one slow request (it waits for what is left of one, or more).
WHOLE_SHARE = 0.5
# With a worker idle, at most this share of one: the fast request still needs a core, and on a
# machine with few cores the slow requests hold them; the scheduler hands it one within a few
# ms (more for a pool, whose request wakes two processes or threads on the way). Both sit in
# the gap measured between the two shapes (docs/measurements.md, "One slow request among fast
# ones").
IDLE_SHARE = 1 / 3
SWITCH_MOST = 4.0  # threads: a fast p99 of at most this many switch intervals fits the GIL
# What a model's traits say a fast request meets while a slow one computes, in a table's few
# words (``_verdict`` says it in a sentence, and judges it).
IN_SHORT: dict[Expected, str] = {"whole": "waits for all of it", "switch": "waits for a GIL turn",
                                 "idle": "an idle worker takes it",
                                 "hash": "the kernel picks the worker"}  # fmt: skip


def findings(data: MixedResults) -> list[str]:
    """One sentence per model (its fast p99 alone and beside the slow class, against what its
    traits say it must do), then the switch-interval sweep's."""
    fast, slow = data.fast_name, data.slow_names[0]
    lines = []
    for model in data.models():
        alone = data.latency(model, "alone", fast, "p99")
        mixed = data.latency(model, "mixed", fast, "p99")
        own = data.latency(model, "mixed", slow, "p50")
        if not (alone and mixed and own):
            continue
        lines.append(f"{model}: a fast request's p99 was {alone.ms()} alone and {mixed.ms()} "
                     f"beside `{slow}` ({mixed.median / alone.median:.0f}x), against "
                     f"{own.ms()} for a slow request itself; {_verdict(model, mixed, own, data)}"
                     )  # fmt: skip
    return lines + client_findings(data) + sweep_findings(data)


def client_findings(data: MixedResults) -> list[str]:
    """Dealt by client: where the kernel keeps each client to one worker, the fast clients that
    share a worker with the slow client against the others; else, that clients were spread.
    Each judged against one slow request (the slow client's own p50)."""
    lines = []
    for model in data.models():
        runs = [run for run in data.runs if run.model == model and run.phase == "by_client"]
        own = data.latency(model, "by_client", data.slow_names[0], "p50")
        if not runs or own is None:
            continue
        if not all(run.kept_to_one() for run in runs):
            fast = Spread.of([p99 for run in runs if (p99 := run.fast_latency(
                [c for c in run.clients if c.kind == 0]).p99) is not None])  # fmt: skip
            fits = fast.median <= IDLE_SHARE * own.median
            lines.append(f"{model}, a slow client among fast ones: clients were not kept to "
                         f"a worker (whichever was idle took the next datagram), and the fast "
                         f"clients' p99 was {fast.ms()}, against {own.ms()} for a slow request; "
                         f"{'it fits' if fits else 'it does NOT fit'} an idle worker taking "
                         f"each.")  # fmt: skip
            continue
        split = [run.fast_beside_slow() for run in runs]
        shared, apart = (_p99s(runs, [groups[side] for groups in split]) for side in (0, 1))
        counts = ", ".join(f"{len(s)} of {len(s) + len(a)}" for s, a in split)
        fits = ((not shared or shared.median >= WHOLE_SHARE * own.median)
                and (not apart or apart.median <= IDLE_SHARE * own.median))  # fmt: skip
        told = f"had a p99 of {shared.ms()}" if shared else "were none, in every round"
        lines.append(f"{model}, a slow client among fast ones: each client kept to one worker; "
                     f"the fast clients on the slow client's worker ({counts}) {told}, the "
                     f"others {apart.ms() if apart else 'none'}, against {own.ms()} for a slow "
                     f"request; {'it fits' if fits else 'it does NOT fit'} a kernel that "
                     f"picks the worker by address.")  # fmt: skip
    return lines


def _p99s(runs: list[MixedRun], groups: list[list[ClientResult]]) -> Spread | None:
    """The p99 of each run's group of fast clients, over the runs where it had any."""
    values = [p99 for run, group in zip(runs, groups, strict=True)
              if group and (p99 := run.fast_latency(group).p99) is not None]  # fmt: skip
    return Spread.of(values) if values else None


def _verdict(model: str, mixed: Spread, own: Spread, data: MixedResults) -> str:
    kind = expected(model)
    interval = data.default_switch_interval_ms * 1000
    if kind == "whole":
        fits = mixed.median >= WHOLE_SHARE * own.median
        said = "one thread: a fast request that comes during a slow one waits for all of it"
    elif kind == "switch":
        fits = mixed.median <= SWITCH_MOST * interval < own.median
        said = (f"threads on one GIL: it waits for the GIL to be handed over, a switch "
                f"interval ({data.default_switch_interval_ms:g} ms) a turn, not the whole slow "
                f"request")  # fmt: skip
    elif kind == "hash":  # judged client by client, where a slow client's worker is known
        return (
            "expected, from its traits: the kernel picks the worker by the client's "
            "address, so a fast request waits for all of a slow one when both landed on one "
            "worker; with requests of every kind from every client that is now and then; "
            "the mix dealt by client, below, tells the clients apart."
        )
    else:
        fits = mixed.median <= IDLE_SHARE * own.median
        said = "a GIL per worker: another worker, idle, takes it"
    return f"expected, from its traits: {said}. {'It fits' if fits else 'It does NOT fit'}."


def sweep_findings(data: MixedResults) -> list[str]:
    fast, slow = data.fast_name, data.slow_names[0]
    lines = []
    for model in data.models():
        intervals = data.intervals(model)
        if len(intervals) < 2:
            continue
        p99 = {ms: data.latency(model, "mixed", fast, "p99", ms) for ms in intervals}
        own = {ms: data.latency(model, "mixed", slow, "p50", ms) for ms in intervals}
        listed = ", ".join(f"{p99[ms].ms()} at {ms:g} ms" for ms in intervals if p99[ms])
        line = f"{model}, the switch interval swept: a fast request's p99 was {listed}."
        low, default = min(intervals), data.default_switch_interval_ms
        if 1.0 in p99 and default in p99 and p99[1.0] and p99[default]:
            line += (f" At 1 ms it is {p99[default].median / p99[1.0].median:.1f}x lower than "
                     f"at {default:g} ms.")  # fmt: skip
        if own.get(low) and own.get(default):
            line += (f" What it costs the slow class: its p50 was {own[default].ms()} at "
                     f"{default:g} ms and {own[low].ms()} at {low:g} ms.")  # fmt: skip
        lines.append(line)
    return lines


def figure(data: MixedResults):
    fast, slow = data.fast_name, data.slow_names[0]
    swept = [model for model in data.models() if len(data.intervals(model)) > 1]
    fig, axes = plt.subplots(1, 2 if swept else 1, figsize=(11 if swept else 7, 4.6),
                             squeeze=False, width_ratios=[2, 1] if swept else None)  # fmt: skip
    left = axes[0][0]
    models = data.models()
    for x, model in enumerate(models):
        colour, marker = style(model)
        for phase, face in (("alone", "white"), ("mixed", colour)):
            spread = data.latency(model, phase, fast, "p99")
            if spread is None:
                continue
            below, above = (spread.median - spread.low) / 1000, (spread.high - spread.median) / 1000
            left.errorbar([x], [spread.median / 1000], yerr=[[below], [above]], marker=marker,
                          color=colour, markerfacecolor=face, markersize=9, capsize=3,
                          linestyle="none")  # fmt: skip
            where = "alone" if phase == "alone" else f"beside {slow}"
            tip(left, x, spread.median / 1000, f"{model}: {fast} p99 {where}, {spread.ms()}")
    own = [s.median for model in models if (s := data.latency(model, "mixed", slow, "p50"))]
    if own:
        left.axhline(sorted(own)[len(own) // 2] / 1000, color="#555555", linestyle="--",
                     linewidth=1, label=f"one slow request ({slow}, its p50)")  # fmt: skip
    left.axhline(data.default_switch_interval_ms, color="#555555", linestyle=":", linewidth=1,
                 label=f"the switch interval ({data.default_switch_interval_ms:g} ms)")  # fmt: skip
    left.plot([], [], marker="o", markerfacecolor="white", color="#333333", linestyle="none",
              label=f"{fast} alone")  # fmt: skip
    left.plot([], [], marker="o", color="#333333", linestyle="none", label=f"beside {slow}")
    left.set_yscale("log")
    plain_ticks(left)
    left.set_xticks(range(len(models)), models, rotation=35, ha="right")
    left.set_xlim(-0.6, len(models) - 0.4)
    left.set_ylabel(f"p99 of a fast request ({fast}), ms")
    left.set_title(f"{data.mix.spec}, {data.rate:g}/s over {data.clients} clients, "
                   f"{data.workers} workers", fontsize=10)  # fmt: skip
    fig.legend(*left.get_legend_handles_labels(), fontsize=8, loc="lower center", ncol=4,
               bbox_to_anchor=(0.5, 0.03), frameon=False)  # fmt: skip
    if swept:
        _sweep_panel(axes[0][1], data, swept)
    fig.suptitle("One slow request among fast ones: who makes the fast ones wait")
    fig.text(0.01, 0.005, f"servers on Python {data.server_python}; {data.rounds} round(s) of "
             f"{data.seconds:g} s, median and range", fontsize=7, color="#555555")  # fmt: skip
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def _sweep_panel(axis, data: MixedResults, models: list[str]) -> None:
    fast, slow = data.fast_name, data.slow_names[0]
    for model in models:
        colour, marker = style(model)
        intervals = data.intervals(model)
        for name, key, line, label in ((fast, "p99", "-", f"{fast} p99"),
                                       (slow, "p50", "--", f"{slow} p50")):  # fmt: skip
            points = [(ms, s) for ms in intervals
                      if (s := data.latency(model, "mixed", name, key, ms))]  # fmt: skip
            axis.plot([ms for ms, _ in points], [s.median / 1000 for _, s in points],
                      color=colour, marker=marker, linestyle=line,
                      markerfacecolor=colour if key == "p99" else "white",
                      label=f"{model}: {label}")  # fmt: skip
            for ms, spread in points:
                tip(axis, ms, spread.median / 1000,
                    f"{model}, switch interval {ms:g} ms: {label} {spread.ms()}")  # fmt: skip
    every = sorted({ms for model in models for ms in data.intervals(model)})
    axis.plot(every, every, color="#999999", linestyle=":", linewidth=1, label="one interval")
    axis.set_xscale("log")
    axis.set_yscale("log")
    plain_ticks(axis)
    axis.set_xticks(every, [f"{ms:g}" for ms in every])
    axis.set_xlabel("switch interval, ms (sys.setswitchinterval)")
    axis.set_ylabel("ms")
    axis.set_title("threads: shorter turns, shorter waits", fontsize=10)
    axis.legend(fontsize=7, loc="upper left")


def write(path: Path, out: Path | None = None) -> tuple[Path, list[str]]:
    """Draw ``mixed.png`` beside ``path`` (or in ``out``); return it and the findings."""
    data = load(path)
    out = out or Path(path).parent
    out.mkdir(parents=True, exist_ok=True)
    fig = figure(data)
    png = out / "mixed.png"
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return png, findings(data)
