"""The experiments beside the bench, for report.html: soak, lossy links, sockperf, mixed traffic.

``sections(folder)`` gives one folded ``markup.Section`` per results file found in the folder,
in this order:

- ``soak``: each model offered about twice what it answers, then let off. A figure (left: what
  it was offered and what it answered in the overload, against its capacity; right: its p99 at
  half capacity, in the overload and after it), a table of every figure, and sentences: did
  every model stay up, how much it answered, where the lost datagrams went (the kernel's count
  of drops in the server's receive buffer), how soon its p99 came back, its memory.
- ``lossy``: each model behind a lossy link, then a narrow one. A figure per link (replies/s
  and p99 per model, in the registry's colours), a table, a sentence per link.
- ``interop``: our generator against sockperf's client on the same servers. A figure of p50
  and p99, side by side per server and shape; a table of the comparison and one of sockperf's
  ping-pong against every model; sentences with ours / sockperf's.
- ``mixed``: one slow request among fast ones, drawn by ``views.mixed`` (its figure and its
  findings), with a table of each model's figures.

Every figure is inline SVG whose points and bars name their values on hover. Every note and
sentence is computed from the file. A file that cannot be read, or drawn, gives a section
that says so and why: the report around it is still written.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from loadgen.analysis import experiments, mixed  # noqa: E402
from loadgen.analysis.experiments import (  # noqa: E402
    RECOVERY_FACTOR,
    RSS_GROWTH_LIMIT,
    InteropResults,
    LossyResults,
    LossyRow,
    SoakResults,
)
from loadgen.views import markup, svg  # noqa: E402
from loadgen.views import mixed as mixed_view  # noqa: E402
from loadgen.views.figures import plain_ticks, style  # noqa: E402
from loadgen.views.markup import Section  # noqa: E402
from servers import MODELS  # noqa: E402

MB = 2**20


def sections(folder: Path) -> list[Section]:
    """One folded section per other experiment's results file found in ``folder``
    (soak.json, lossy.json, interop.json, mixed.json), in that order; a file that cannot be
    read gives a section saying so (with the reason), never an exception."""
    return [_section(Path(folder) / f"{part_id}.json", part_id, title, load, draw)
            for part_id, title, load, draw in PARTS
            if (Path(folder) / f"{part_id}.json").exists()]  # fmt: skip


def _section(path: Path, part_id: str, title: str, load: Callable[[Path], Any],
             draw: Callable[[Any], tuple[str, str]]) -> Section:  # fmt: skip
    try:
        data = load(path)
    except (OSError, ValueError) as error:
        return _failed(part_id, title, f"{path.name} could not be read", str(error))
    try:
        note, body = draw(data)
    except Exception as error:  # a file read but not drawn must not cost the page its report
        return _failed(part_id, title, f"{path.name} could not be drawn",
                       f"{path}: {type(error).__name__}: {error}")  # fmt: skip
    return Section(part_id, title, note, body)


def _failed(part_id: str, title: str, note: str, reason: str) -> Section:
    return Section(part_id, title, note, f"<p>{markup.text(reason)}</p>")


def _inline(figure: Figure, prefix: str, caption: str) -> str:
    text = svg.inline(figure, prefix)
    plt.close(figure)  # a pyplot figure (views.mixed draws with pyplot) is kept until closed
    return markup.figure(text, caption)


def _ms(microseconds: float | None) -> str:
    return "-" if microseconds is None else f"{microseconds / 1000:.3g}"


def _us(microseconds: float | None) -> str:
    return "-" if microseconds is None else f"{microseconds:,.{1 if microseconds < 100 else 0}f}"


def _models(count: int) -> str:
    return f"{count} model{'' if count == 1 else 's'}"


def _names(models: list[str]) -> str:
    return ", ".join(models) if models else "none"


def _span(values: dict[str, float], show: Callable[[float], str]) -> str:
    """The lowest and highest of ``values`` (by model), each with its model."""
    low, high = min(values, key=values.__getitem__), max(values, key=values.__getitem__)
    if values[low] == values[high]:
        return f"{show(values[low])} ({low if len(values) == 1 else 'every model'})"
    return f"{show(values[low])} ({low}) to {show(values[high])} ({high})"


# ---- soak -----------------------------------------------------------------------------------


def soak(data: SoakResults) -> tuple[str, str]:
    """The soak's note and body."""
    if not data.rows:
        return "no model was soaked", "<p>soak.json holds no rows.</p>"
    caption = (f"Each model offered {_offered_factor(data):.1f}x its capacity for "
               f"{data.overload_s:g} s, then half of it for {data.recover_s:g} s "
               f"(work {data.work}). Hover over a bar or point for its figures.")  # fmt: skip
    body = (_inline(soak_figure(data), "soak", caption) + soak_table(data)
            + markup.sentences(soak_findings(data)))  # fmt: skip
    return _soak_note(data), body


def _soak_note(data: SoakResults) -> str:
    count = len(data.rows)
    clean = sum(row.clean for row in data.rows)
    late = sum(row.recovered_in_s is None for row in data.rows)
    slowest = max((row.recovered_in_s or 0 for row in data.rows), default=0)
    back = (f"every p99 back within {slowest} s" if not late
            else f"{late} not back within {data.recover_s:g} s")  # fmt: skip
    everyone = "all" if clean == count else f"{clean} of {count}"
    return f"{_models(count)}; {everyone} stayed up and stopped cleanly; {back}"


def _offered_factor(data: SoakResults) -> float:
    """The overload's rate against capacity, the median over the models (0: no capacity)."""
    factors = [row.overload.rate / row.capacity_rps for row in data.rows if row.capacity_rps]
    return statistics.median(factors) if factors else 0.0


def soak_figure(data: SoakResults) -> Figure:
    figure = Figure(figsize=(10, 4.2))
    left, right = figure.subplots(1, 2, width_ratios=[3, 2])
    models = [row.model for row in data.rows]
    for x, row in enumerate(data.rows):
        colour, _ = style(row.model)
        over = row.overload
        offered = left.bar(x, over.rate, width=0.7, color="white", edgecolor=colour)[0]
        answered = left.bar(x, over.throughput_rps, width=0.7, color=colour)[0]
        left.hlines(row.capacity_rps, x - 0.42, x + 0.42, color="#222222", linewidth=2)
        svg.tip_artist(left, offered, f"{row.model}: offered {over.rate:,.0f}/s in the overload")
        svg.tip_artist(left, answered, f"{row.model}: answered {over.throughput_rps:,.0f}/s of "
                    f"{over.rate:,.0f}/s offered (capacity {row.capacity_rps:,.0f}/s); "
                    f"{over.unanswered:,} unanswered, {row.kernel.socket_drops:,} dropped in "
                    f"its socket's receive buffer")  # fmt: skip
    grey = "#555555"
    left.legend(handles=[Line2D([], [], color="#222222", linewidth=2, label="capacity"),
                         Patch(facecolor="white", edgecolor=grey, label="offered in the overload"),
                         Patch(color=grey, label="answered in the overload")],
                fontsize=8, loc="upper left")  # fmt: skip
    left.set_xticks(range(len(models)), models, rotation=35, ha="right")
    left.set_ylabel("requests a second")
    left.set_title("Overloaded: offered, answered, capacity", fontsize=10)
    _soak_p99(right, data)
    figure.tight_layout()
    return figure


def _soak_p99(axis: Any, data: SoakResults) -> None:
    phases = ("light", "overload", "recovery")
    for row in data.rows:
        colour, marker = style(row.model)
        points = [(x, p99) for x, name in enumerate(phases)
                  if (p99 := getattr(row, name).p99_us) is not None]  # fmt: skip
        axis.plot([x for x, _ in points], [p99 / 1000 for _, p99 in points], color=colour,
                  marker=marker, label=row.model)  # fmt: skip
        for x, p99 in points:
            svg.tip(axis, x, p99 / 1000, f"{row.model}, {phases[x]}: p99 {_ms(p99)} ms")
    axis.set_yscale("log")
    plain_ticks(axis)
    axis.set_xticks(range(3), ["half capacity", "overload", "after, at half"])
    axis.set_xlim(-0.3, 2.3)
    axis.set_ylabel("p99 latency, ms")
    axis.set_title("p99 before, during and after", fontsize=10)
    axis.legend(fontsize=7, loc="upper right")


def soak_table(data: SoakResults) -> str:
    header = ["model", "capacity/s", "offered/s", "answered/s", "unanswered", "socket drops",
              "p99 ms: half", "overload", "after", "back in", "RSS MB", "growth",
              "clean"]  # fmt: skip
    rows = [[row.model, f"{row.capacity_rps:,.0f}", f"{row.overload.rate:,.0f}",
             f"{row.overload.throughput_rps:,.0f}", f"{row.overload.unanswered:,}",
             f"{row.kernel.socket_drops:,}", _ms(row.light.p99_us), _ms(row.overload.p99_us),
             _ms(row.recovery.p99_us),
             f"{row.recovered_in_s} s" if row.recovered_in_s is not None else "no",
             f"{row.rss_bytes.first_second / MB:.1f} > {row.rss_bytes.peak / MB:.1f}",
             "-" if row.rss_growth is None else f"{row.rss_growth:.0%}",
             "yes" if row.clean else "NO"] for row in data.rows]  # fmt: skip
    return markup.table(header, rows)


def soak_findings(data: SoakResults) -> list[str]:
    rows = data.rows
    down = [row.model for row in rows if not row.stayed_up]
    unclean = [row.model for row in rows if row.stayed_up and not row.stopped_cleanly]
    names = _names([row.model for row in rows])
    everyone = f"All {_models(len(rows))} ({names})" if len(rows) > 1 else names
    lines = [f"{everyone} stayed up through {data.overload_s:g} s of overload and stopped "
             f"cleanly." if not down and not unclean else
             f"Fell over: {_names(down)}; did not stop cleanly: {_names(unclean)}."]  # fmt: skip
    shares = {row.model: share for row in rows if (share := row.answered_share) is not None}
    if shares:
        lines.append(
            f"Offered {_offered_factor(data):.1f}x their capacity, the models answered "
            f"{_span(shares, lambda v: f'{v:.0%}')} of what they answer in closed loop."
        )
    unanswered = sum(row.overload.unanswered for row in rows)
    drops = sum(row.kernel.socket_drops for row in rows)
    if unanswered:
        lines.append(f"Of the {unanswered:,} requests of the overload left unanswered, the "
                     f"kernel counted {drops:,} ({drops / unanswered:.0%}) dropped in the "
                     f"servers' receive buffers.")  # fmt: skip
    lines += _soak_latency(data)
    growth = {row.model: row.rss_growth for row in rows if row.rss_growth is not None}
    if growth:
        over = [model for model, share in growth.items() if share > RSS_GROWTH_LIMIT]
        verdict = (f"over the {RSS_GROWTH_LIMIT:.0%} allowed: {_names(over)}" if over
                   else f"none over the {RSS_GROWTH_LIMIT:.0%} allowed")  # fmt: skip
        lines.append(f"From the first second of overload to its peak, the server's memory grew "
                     f"by {_span(growth, lambda v: f'{v:.0%}')}: {verdict}.")  # fmt: skip
    return lines


def _soak_latency(data: SoakResults) -> list[str]:
    light = {row.model: row.light.p99_us for row in data.rows if row.light.p99_us is not None}
    over = {row.model: row.overload.p99_us for row in data.rows
            if row.overload.p99_us is not None}  # fmt: skip
    lines = []
    if light and over:
        lines.append(
            f"At half capacity the p99 was {_span(light, lambda v: f'{_ms(v)} ms')}; in the "
            f"overload, {_span(over, lambda v: f'{_ms(v)} ms')}."
        )
    back = [f"{row.model} in {row.recovered_in_s} s" for row in data.rows
            if row.recovered_in_s is not None]  # fmt: skip
    late = [row.model for row in data.rows if row.recovered_in_s is None]
    lines.append(
        f"Back at half capacity, the p99 came within {RECOVERY_FACTOR:g}x of its "
        f"light-load value: {_names(back)}"
        + (f"; not within {data.recover_s:g} s: {_names(late)}." if late else ".")
    )
    return lines


# ---- lossy ----------------------------------------------------------------------------------


def lossy(data: LossyResults) -> tuple[str, str]:
    """The lossy links' note and body."""
    rows = [row for rows in data.conditions.values() for row in rows]
    if not rows:
        return "no model was run", "<p>lossy.json holds no rows.</p>"
    note = (f"{_models(len(data.models()))} behind {' and '.join(data.conditions)}, "
            f"{data.clients} clients in closed loop")  # fmt: skip
    caption = (f"Each model for {data.seconds:g} s per link, {data.clients} clients in closed "
               f"loop, {data.work}. Hover over a bar for its figures.")  # fmt: skip
    body = (_inline(lossy_figure(data), "lossy", caption) + lossy_table(data)
            + markup.sentences(lossy_findings(data)))  # fmt: skip
    return note, body


def _lossy_tip(condition: str, row: LossyRow) -> str:
    return (
        f"{row.model}, {condition}: {row.replies_rps:,.0f} replies/s, p50 "
        f"{_ms(row.p50_us)} ms, p99 {_ms(row.p99_us)} ms; {row.unanswered:,} of "
        f"{row.sent:,} unanswered, {row.dropped_on_the_link:,} dropped on the link"
    )


def lossy_figure(data: LossyResults) -> Figure:
    columns = max(len(data.conditions), 1)
    figure = Figure(figsize=(3.6 * columns + 1, 5.2))
    axes = figure.subplots(2, columns, squeeze=False)
    for column, (condition, rows) in enumerate(data.conditions.items()):
        top, bottom = axes[0][column], axes[1][column]
        models = [row.model for row in rows]
        for x, row in enumerate(rows):
            colour, _ = style(row.model)
            text = _lossy_tip(condition, row)
            svg.tip_artist(top, top.bar(x, row.replies_rps, color=colour)[0], text)
            svg.tip_artist(bottom, bottom.bar(x, (row.p99_us or 0) / 1000, color=colour)[0], text)
        top.set_title(condition, fontsize=10)
        top.set_xticks(range(len(models)), [])
        bottom.set_xticks(range(len(models)), models, rotation=35, ha="right")
    axes[0][0].set_ylabel("replies a second")
    axes[1][0].set_ylabel("p99 latency, ms")
    figure.tight_layout()
    return figure


def lossy_table(data: LossyResults) -> str:
    header = ["link", "model", "replies/s", "p50 ms", "p99 ms", "sent", "unanswered",
              "dropped on the link", "server answered"]  # fmt: skip
    rows = [[condition, row.model, f"{row.replies_rps:,.0f}", _ms(row.p50_us), _ms(row.p99_us),
             f"{row.sent:,}", f"{row.unanswered:,}", f"{row.dropped_on_the_link:,}",
             "-" if row.server_handled is None else f"{row.server_handled:,}"]
            for condition, rows in data.conditions.items() for row in rows]  # fmt: skip
    return markup.table(header, rows, numeric_from=2)


def lossy_findings(data: LossyResults) -> list[str]:
    lines = []
    for condition, rows in data.conditions.items():
        if not rows:
            continue
        replies = ", ".join(f"{row.model} {row.replies_rps:,.0f}" for row in rows)
        p99 = {row.model: row.p99_us for row in rows if row.p99_us is not None}
        unanswered = sum(row.unanswered for row in rows)
        dropped = sum(row.dropped_on_the_link for row in rows)
        line = (f"With {condition}, replies/s: {replies}"
                + (f"; p99 {_span(p99, lambda v: f'{_ms(v)} ms')}" if p99 else "")
                + f"; {unanswered:,} requests unanswered, {dropped:,} datagrams dropped on the "
                f"link.")  # fmt: skip
        handled = [row for row in rows if row.server_handled is not None]
        extra = sum(row.server_handled - row.received for row in handled)
        if handled and extra == 0:
            line += " Every server answered exactly as many as its client received."
        elif handled:
            line += (f" The servers answered {extra:,} more than their clients received: "
                     f"replies lost on the way back.")  # fmt: skip
        lines.append(line)
    return lines


# ---- interop --------------------------------------------------------------------------------


def interop(data: InteropResults) -> tuple[str, str]:
    """The sockperf comparison's note and body."""
    checks = data.model_checks
    passed = [check.model for check in checks if check.ok]
    p50 = [row.ratio.p50_us for row in data.rows if row.ratio and row.ratio.p50_us is not None]
    note = ", ".join(
        ([f"ours/sockperf p50 {min(p50):.2f}-{max(p50):.2f}x over {len(p50)} comparisons"]
         if p50 else ["no comparison"])
        + ([f"{len(passed)} of {_models(len(checks))} passed sockperf ping-pong"] if checks else [])
    )  # fmt: skip
    shown = [row for row in data.rows if row.p50_us is not None or row.p99_us is not None]
    body = _inline(interop_figure(data), "interop", _interop_caption(data)) if shown else ""
    body += interop_table(data) + markup.sentences(interop_findings(data))
    if checks:
        body += checks_table(data)
    return note, body


def _interop_caption(data: InteropResults) -> str:
    where = f", placement {data.placement}" if data.placement else ""
    return (f"Round trips of {data.message_size}-byte messages, {data.sockperf or 'sockperf'}"
            f"{where}; each bar the median of {data.trials} trial(s) of {data.seconds:g} s. "
            f"Hover over a bar for its figures.")  # fmt: skip


def interop_figure(data: InteropResults) -> Figure:
    sides = list(dict.fromkeys(row.side for row in data.rows))
    colours = {side: plt.get_cmap("tab10")(i) for i, side in enumerate(sides)}
    figure = Figure(figsize=(10, 4.2))
    axes = figure.subplots(1, 2)
    for axis, key in zip(axes, ("p50_us", "p99_us"), strict=True):
        _interop_panel(axis, data, key, colours)
    handles = [Patch(color=colour, label=side) for side, colour in colours.items()]
    figure.legend(handles=handles, fontsize=8, loc="lower center", ncol=len(handles),
                  frameon=False)  # fmt: skip
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    return figure


def _interop_panel(axis: Any, data: InteropResults, key: str, colours: dict[str, Any]) -> None:
    """One figure (p50 or p99) as bars: a group per server and shape, a bar per side in it."""
    label = key.removesuffix("_us")
    groups = list(dict.fromkeys((row.server, row.shape) for row in data.rows))
    values = []
    for x, group in enumerate(groups):
        rows = [row for row in data.rows
                if (row.server, row.shape) == group and getattr(row, key) is not None]  # fmt: skip
        width = 0.8 / max(len(rows), 1)
        for i, row in enumerate(rows):
            value = getattr(row, key)
            values.append(value)
            bar = axis.bar(x - 0.4 + width * (i + 0.5), value, width, color=colours[row.side])
            svg.tip_artist(axis, bar[0], f"{row.server}, {row.shape}, {row.side}: {label} "
                        f"{_us(value)} µs, {_us(row.replies_per_s)} replies/s")  # fmt: skip
    if values and min(values) > 0 and max(values) > 10 * min(values):
        axis.set_yscale("log")  # a tail an order of magnitude out would flatten the rest
        plain_ticks(axis)
    axis.set_xticks(range(len(groups)), [f"{server}\n{shape}" for server, shape in groups],
                    fontsize=8)  # fmt: skip
    axis.set_ylabel(f"{label} round trip, µs")
    axis.set_title(f"{label}: our generator and sockperf's client", fontsize=10)


def interop_table(data: InteropResults) -> str:
    header = ["server", "shape", "side", "replies/s", "p50 µs", "p99 µs",
              "ours/sockperf: replies/s", "p50", "p99"]  # fmt: skip
    rows = []
    for row in data.rows:
        ratio = row.ratio
        ratios = [_ratio(getattr(ratio, key) if ratio else None)
                  for key in ("replies_per_s", "p50_us", "p99_us")]  # fmt: skip
        side = row.side if row.ok else f"{row.side} (FAILED: {'; '.join(row.errors)})"
        rows.append([row.server, row.shape, side, _us(row.replies_per_s), _us(row.p50_us),
                     _us(row.p99_us), *ratios])  # fmt: skip
    return markup.table(header, rows, numeric_from=3)


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def checks_table(data: InteropResults) -> str:
    header = ["model", "sockperf ping-pong", "round trips/s", "p50 µs", "p99 µs"]
    rows = [[check.model, "ok" if check.ok else "FAILED: " + "; ".join(check.errors),
             _us(check.replies_per_s), _us(check.p50_us), _us(check.p99_us)]
            for check in data.model_checks]  # fmt: skip
    return markup.table(header, rows, numeric_from=2)


def interop_findings(data: InteropResults) -> list[str]:
    lines = []
    for row in data.rows:
        if not (row.ours and row.ratio):
            continue
        r = row.ratio
        lines.append(
            f"On {row.server}, {row.shape}: ours / sockperf's was "
            f"{_ratio(r.replies_per_s)} for replies/s, {_ratio(r.p50_us)} for the p50 "
            f"and {_ratio(r.p99_us)} "
            f"for the p99 (ours: p50 {_us(row.p50_us)} µs, p99 {_us(row.p99_us)} µs)."
        )
    failed = [row for row in data.rows if not row.ok]
    if failed:
        lines.append("Failed: " + "; ".join(f"{row.server}, {row.shape}, {row.side}: "
                                            f"{'; '.join(row.errors) or 'not ok'}"
                                            for row in failed) + ".")  # fmt: skip
    checks = data.model_checks
    if checks:
        bad = [check.model for check in checks if not check.ok]
        rates = ", ".join(f"{check.model} {check.replies_per_s:,.0f}" for check in checks
                          if check.replies_per_s is not None)  # fmt: skip
        passed = (f"all {_models(len(checks))}" if not bad else
                  f"{len(checks) - len(bad)} of {_models(len(checks))} (failed: {_names(bad)})"
                  )  # fmt: skip
        speed = f"; round trips/s: {rates}" if rates else ""
        lines.append(f"sockperf ping-pong ran to its end, without errors, against {passed}"
                     f"{speed}.")  # fmt: skip
    return lines


# ---- mixed ----------------------------------------------------------------------------------


def mixed_section(data: mixed.MixedResults) -> tuple[str, str]:
    """The mixed-traffic note and body: ``views.mixed``'s figure and findings, and a table."""
    fast, slow = data.fast_name, data.slow_names[0] if data.slow_names else None
    models = data.models()
    if not models or slow is None:
        return "no run", "<p>mixed.json holds no run of a fast class beside a slow one.</p>"
    beside = {model: spread.median for model in models
              if (spread := data.latency(model, "mixed", fast, "p99"))}  # fmt: skip
    note = f"{_models(len(models))}, {data.mix.spec} at {data.rate:g}/s" + (
        f"; fast p99 beside {slow}: {_span(beside, lambda v: f'{_ms(v)} ms')}" if beside else ""
    )
    caption = (f"{data.mix.spec}, {data.rate:g}/s over {data.clients} clients; "
               f"{data.rounds} round(s) of {data.seconds:g} s, median and range. Hover over a "
               f"point for its figures.")  # fmt: skip
    body = (_inline(mixed_view.figure(data), "mixed", caption) + mixed_table(data)
            + markup.sentences(mixed_view.findings(data)))  # fmt: skip
    return note, body


def mixed_table(data: mixed.MixedResults) -> str:
    fast, slow = data.fast_name, data.slow_names[0]
    header = ["model", "expected, from its traits", f"{fast} p99 alone", f"beside {slow}",
              f"{slow} p50"]  # fmt: skip
    rows = []
    for model in data.models():
        figures = (data.latency(model, "alone", fast, "p99"),
                   data.latency(model, "mixed", fast, "p99"),
                   data.latency(model, "mixed", slow, "p50"))  # fmt: skip
        rows.append([model, mixed_view.IN_SHORT[mixed.expected(model)] if model in MODELS else "-",
                     *(spread.ms() if spread else "-" for spread in figures)])  # fmt: skip
    return markup.table(header, rows, numeric_from=2)


PARTS: tuple[tuple[str, str, Callable[[Path], Any], Callable[[Any], tuple[str, str]]], ...] = (
    ("soak", "Soak: overloaded, then let off", experiments.load_soak, soak),
    ("lossy", "A lossy link and a narrow one", experiments.load_lossy, lossy),
    ("interop", "Our generator against sockperf", experiments.load_interop, interop),
    ("mixed", "Mixed traffic: one slow request among fast ones", mixed.load, mixed_section),
)
