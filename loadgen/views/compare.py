"""Two results files side by side: is B faster than A, and is the difference more than noise?

    python -m loadgen compare A.json B.json [--threshold 5] [--all-levels] [--json OUT]

A view, like the report: it reads results files only, so two files from two machines, two
Python versions or two commits can be compared anywhere (pyperf's ``compare_to`` is the model).

What is compared. The closed-loop matrix only (the load and core sweeps are set relative to
each file's own capacity, so their points do not line up across files). For every model and
workload measured in both files, at the level the report compares: the highest concurrency
present in both (``--all-levels``: every concurrency present in both). Workloads are matched by
their label (``cpu=2ms``), not by the exact spec (``cpu=32121it``): each machine calibrates its
own iteration count for the same 2 ms, and that count is the point of calibrating. For each of
replies/s, p50 and p99: each side's median over its trials with the min-max range and the
number of trials, and the ratio B/A of the medians (above 1 for replies/s is B faster; below 1
for latency is B lower).

The noise rule. A difference is reported as beyond noise only if all three hold:

1. the two sides' min-max ranges do not overlap (every trial of one side beats every trial of
   the other);
2. that separation would be unlikely if nothing differed: were all trials drawn from one
   distribution, the two sets separate completely, one way or the other, with probability
   2 / C(na + nb, na). We require at most 10%, which needs 3 trials a side (exactly 10%; 2
   against 2 separates by luck one time in three, 1 against 1 always "separates"), so with
   fewer the verdict is "n=1: cannot tell" (or "n=2: ...") rather than a claim;
3. the ratio is beyond the threshold (default 5%, ``--threshold``), symmetric so that swapping
   A and B never changes a verdict: max(B/A, A/B) > 1 + threshold. Below that, even a clean
   separation is too small to matter for a teaching bench whose trials of one point vary by a
   few percent.

Why not a statistical test: condition 2 *is* the exact Mann-Whitney test at its extreme (U = 0),
computed without scipy. With the bench's usual 3 trials a side, U = 0 is the only outcome a
Mann-Whitney test could call significant at all (two-sided p = 0.10; no outcome reaches 0.05),
and a t-test would assume normal trial noise, which a shared machine (trial spreads up to 45%
in the reference run) does not give. The rule cannot see drift *between* the two sessions: two
files measured hours apart on a shared machine can differ because the neighbours changed, so
a difference beyond noise says the two sessions differed, not why.

Runs where the load generator was the limit (``generator_limited``) are marked: their replies/s
is how fast the generator could ask, a lower bound for the server.
"""

from __future__ import annotations

import math
import statistics
import sys
import textwrap
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loadgen.analysis.results import Results, Run, RunKind, load, write_json_atomically
from loadgen.analysis.summary import Summary, ordered
from servers.work import Work

DEFAULT_THRESHOLD = 0.05
SEPARATION_CHANCE = 0.10  # the most luck we accept for a complete separation of the trials

# (key, what the table calls it, the figure read from a run, scale for display, higher is better)
METRICS: tuple[tuple[str, str, Callable[[Run], float | None], float, bool], ...] = (
    ("throughput_rps", "replies/s", lambda run: run.loadgen.throughput_rps, 1.0, True),
    ("p50_ms", "p50 ms", lambda run: run.loadgen.latency_us.p50, 1e-3, False),
    ("p99_ms", "p99 ms", lambda run: run.loadgen.latency_us.p99, 1e-3, False),
)

# Verdicts, from B's point of view.
BETTER = "better"
WORSE = "worse"
NOISE = "within noise"
CANNOT_TELL = "cannot tell"
NO_DATA = "no data"


@dataclass(frozen=True)
class Spread:
    """One side of one figure: the median over trials, the min-max range, how many trials."""

    median: float | None
    low: float | None
    high: float | None
    n: int
    generator_limited: bool = False

    @classmethod
    def of(cls, values: list[float], generator_limited: bool = False) -> Spread:
        if not values:
            return cls(None, None, None, 0, generator_limited)
        return cls(statistics.median(values), min(values), max(values), len(values),
                   generator_limited)  # fmt: skip


@dataclass(frozen=True)
class Difference:
    """B against A for one figure, and what may be concluded from it."""

    a: Spread
    b: Spread
    ratio: float | None  # B's median over A's; None when A's is 0 or missing
    verdict: str  # BETTER, WORSE, NOISE, CANNOT_TELL, NO_DATA: for B, against A
    overlap: bool | None  # do the min-max ranges overlap (None without data)
    separation_chance: float | None  # 2 / C(na + nb, na): a complete split by luck


def separation_chance(na: int, nb: int) -> float:
    """How often na and nb trials of the same thing split completely, one way or the other.

    Each of the C(na + nb, na) orderings of the pooled trials into the two sides is equally
    likely when nothing differs; exactly two of them put one side wholly above the other.
    """
    return min(1.0, 2 / math.comb(na + nb, na))


def judge(a: Spread, b: Spread, higher_is_better: bool, threshold: float) -> Difference:
    """The ratio B/A of the medians and whether it exceeds the noise (module docstring)."""
    if a.n == 0 or b.n == 0 or a.median is None or b.median is None:
        return Difference(a, b, None, NO_DATA, None, None)
    ratio = b.median / a.median if a.median else None  # A answered nothing: no ratio
    overlap = a.low <= b.high and b.low <= a.high  # type: ignore[operator]
    chance = separation_chance(a.n, b.n)
    b_ahead = (b.median > a.median) == higher_is_better
    if chance > SEPARATION_CHANCE:
        verdict = CANNOT_TELL
    elif overlap:
        verdict = NOISE
    elif ratio and max(ratio, 1 / ratio) <= 1 + threshold:
        verdict = NOISE
    else:  # separated, and beyond the threshold (a ratio of 0 or none at all is beyond any)
        verdict = BETTER if b_ahead else WORSE
    return Difference(a, b, ratio, verdict, overlap, chance)


@dataclass
class Row:
    """One model, one workload, one concurrency level: the three figures compared."""

    work: str  # the label, e.g. cpu=2ms
    model: str
    clients: int
    compared: bool  # the level the verdict line counts (the highest one in both files)
    figures: dict[str, Difference]


@dataclass
class Workload:
    """What the two files share for one workload label, and what only one of them has."""

    label: str
    work_a: Work  # as each file's servers did it (cpu=32121it in one, 21554it in the other)
    work_b: Work
    rows: list[Row] = field(default_factory=list)
    only_a: list[str] = field(default_factory=list)  # models
    only_b: list[str] = field(default_factory=list)
    no_common_level: dict[str, tuple[list[int], list[int]]] = field(default_factory=dict)


@dataclass
class Comparison:
    a: dict[str, Any]  # path and the metadata shown in the header
    b: dict[str, Any]
    threshold: float
    all_levels: bool
    workloads: list[Workload]
    only_a: list[str]  # workload labels measured in A only
    only_b: list[str]


def _side(runs: list[Run], figure: Callable[[Run], float | None]) -> Spread:
    # A latency of None means no reply came back in that trial: it is no sample, not a zero.
    values = [v for v in map(figure, runs) if v is not None]
    return Spread.of(values, any(run.generator_limited for run in runs))


def _labels(summary: Summary) -> dict[str, Work]:
    """Label -> workload of every matrix workload, in the order the file measured them."""
    found: dict[str, Work] = {}
    for work in summary.works(RunKind.MATRIX):
        found.setdefault(work.spec, work)
    return found


def header(path: Path, data: Results) -> dict[str, Any]:
    """What identifies a results file in the comparison's header."""
    metadata = data.metadata
    commit = metadata.git_commit or "unknown"
    server = metadata.server_python  # recorded once the servers may run another Python
    return {
        "path": str(path),
        "python": metadata.python,
        "server_python": server.version if server else None,
        "cpu_model": metadata.cpu_model,
        "cores": metadata.cores,
        "date": metadata.date,
        "commit": commit[:10] + (" (with local changes)" if metadata.git_dirty else ""),
        "trials": metadata.settings.get("trials"),
    }


def compare(
    data_a: Results,
    data_b: Results,
    threshold: float = DEFAULT_THRESHOLD,
    all_levels: bool = False,
    paths: tuple[Path, Path] = (Path("A"), Path("B")),
) -> Comparison:
    """Compare two loaded results objects; ValueError if they share no model and workload."""
    summary_a, summary_b = Summary(data_a), Summary(data_b)
    labels_a, labels_b = _labels(summary_a), _labels(summary_b)
    workloads = []
    for label in [x for x in labels_a if x in labels_b]:
        work_a, work_b = labels_a[label], labels_b[label]
        models_a = summary_a.models(RunKind.MATRIX, work_a)
        models_b = summary_b.models(RunKind.MATRIX, work_b)
        workload = Workload(label, work_a, work_b,
                            only_a=[m for m in models_a if m not in models_b],
                            only_b=[m for m in models_b if m not in models_a])  # fmt: skip
        for model in ordered(set(models_a) & set(models_b)):
            levels_a = summary_a.levels(RunKind.MATRIX, model, work_a)
            levels_b = summary_b.levels(RunKind.MATRIX, model, work_b)
            common = sorted(set(levels_a) & set(levels_b))
            if not common:
                workload.no_common_level[model] = (levels_a, levels_b)
                continue
            for level in common if all_levels else common[-1:]:
                runs_a = summary_a.groups[(RunKind.MATRIX, model, work_a, level)]
                runs_b = summary_b.groups[(RunKind.MATRIX, model, work_b, level)]
                figures = {
                    key: judge(_side(runs_a, figure), _side(runs_b, figure), higher, threshold)
                    for key, _, figure, _, higher in METRICS
                }
                workload.rows.append(Row(label, model, level, level == common[-1], figures))
        workloads.append(workload)
    if not any(workload.rows for workload in workloads):
        raise ValueError(
            f"{paths[0]} and {paths[1]} have no model and workload measured at the same "
            f"concurrency in both (workloads: {', '.join(labels_a) or 'none'} against "
            f"{', '.join(labels_b) or 'none'})"
        )
    return Comparison(
        a=header(paths[0], data_a),
        b=header(paths[1], data_b),
        threshold=threshold,
        all_levels=all_levels,
        workloads=workloads,
        only_a=[x for x in labels_a if x not in labels_b],
        only_b=[x for x in labels_b if x not in labels_a],
    )


def compare_files(
    path_a: Path, path_b: Path, threshold: float = DEFAULT_THRESHOLD, all_levels: bool = False
) -> Comparison:
    """Load and compare two results files (a folder stands for the results.json inside it)."""
    paths = tuple(p / "results.json" if Path(p).is_dir() else Path(p) for p in (path_a, path_b))
    return compare(load(paths[0]), load(paths[1]), threshold, all_levels, paths)  # type: ignore[arg-type]


# ---- text -------------------------------------------------------------------------------------


def _number(value: float, scale: float) -> str:
    value *= scale
    if scale == 1.0:
        return f"{value:,.0f}"
    return f"{value:,.3f}" if value < 1 else f"{value:,.2f}"  # sub-millisecond echo latencies


def _cell(side: Spread, scale: float) -> str:
    if side.n == 0 or side.median is None:
        return "-"
    mark = "*" if side.generator_limited else ""
    if side.n == 1:
        return f"{_number(side.median, scale)}{mark} n=1"
    assert side.low is not None and side.high is not None
    return (f"{_number(side.median, scale)}{mark} "
            f"[{_number(side.low, scale)}-{_number(side.high, scale)}] n={side.n}")  # fmt: skip


def verdict_text(difference: Difference, higher_is_better: bool) -> str:
    """The verdict as a reader wants it: 'B faster', 'B lower', 'n=1: cannot tell'..."""
    if difference.verdict == CANNOT_TELL:
        na, nb = difference.a.n, difference.b.n
        return f"n={na}: cannot tell" if na == nb else f"n={na} vs {nb}: cannot tell"
    if difference.verdict in (BETTER, WORSE):
        if higher_is_better:
            return "B faster" if difference.verdict == BETTER else "B slower"
        return "B lower" if difference.verdict == BETTER else "B higher"
    return difference.verdict


def table_rows(workload: Workload) -> list[list[str]]:
    """model, clients, figure, A, B, B/A, verdict: one row per figure, the model named once."""
    rows = []
    for row in workload.rows:
        for i, (key, name, _, scale, higher) in enumerate(METRICS):
            difference = row.figures[key]
            ratio = "-" if difference.ratio is None else f"{difference.ratio:.2f}"
            rows.append([
                row.model if i == 0 else "",
                str(row.clients) if i == 0 else "",
                name,
                _cell(difference.a, scale),
                _cell(difference.b, scale),
                ratio,
                verdict_text(difference, higher),
            ])  # fmt: skip
    return rows


COLUMNS = ("model", "clients", "figure", "A median [min-max] trials", "B median [min-max] trials",
           "B/A", "verdict")  # fmt: skip
RIGHT = {1, 3, 4, 5}  # numbers are right-aligned


def workload_verdict(workload: Workload) -> str:
    """One line: how B's replies/s compares at the compared level, counted over models."""
    rows = [row for row in workload.rows if row.compared]
    verdicts = [row.figures["throughput_rps"].verdict for row in rows]
    levels = sorted({row.clients for row in rows})
    where = f"at {levels[0]} clients" if len(levels) == 1 else "at each model's highest level"
    parts = [f"B faster for {verdicts.count(BETTER)} of {len(rows)} "
             f"model{'s' if len(rows) != 1 else ''} beyond noise"]  # fmt: skip
    for verdict, text in ((WORSE, "slower for {}"), (NOISE, "{} within noise"),
                          (CANNOT_TELL, "{} cannot tell (too few trials)"),
                          (NO_DATA, "{} without data")):  # fmt: skip
        if verdicts.count(verdict):
            parts.append(text.format(verdicts.count(verdict)))
    limited = sum(
        1 for row in rows
        if row.figures["throughput_rps"].a.generator_limited
        or row.figures["throughput_rps"].b.generator_limited
    )  # fmt: skip
    if limited:
        parts.append(f"{limited} generator-limited (*)")
    return f"{workload.label} {where}, replies/s: " + "; ".join(parts) + "."


def _describe(name: str, side: dict[str, Any]) -> list[str]:
    python = f"Python {side['python']}"
    if side["server_python"]:
        python += f" (servers: Python {side['server_python']})"
    date = str(side["date"] or "?").replace("T", " ")[:16]
    count = side["trials"]
    trials = f", {count} trial{'s' if count != 1 else ''} a point" if count else ""
    return [f"{name}: {side['path']}",
            f"   {python}; {side['cpu_model']} ({side['cores']} cores); {date}; "
            f"commit {side['commit']}{trials}"]  # fmt: skip


def preamble(comparison: Comparison) -> list[str]:
    """The files compared, then what was compared and the noise rule, as one paragraph (each
    renderer wraps it to its own width)."""
    level = (
        "every concurrency measured in both files"
        if comparison.all_levels
        else "the highest concurrency measured in both files (the level the report compares)"
    )
    rule = (
        f"Closed-loop matrix at {level}. B/A is B's median over A's. A difference is beyond "
        f"noise only if the trials' min-max ranges do not overlap, there are enough trials for "
        f"that to mean something (3 a side), and it exceeds {comparison.threshold * 100:g}%."
    )
    return [*_describe("A", comparison.a), *_describe("B", comparison.b), rule]


def notes(workload: Workload) -> list[str]:
    lines = []
    a, b = workload.work_a.exact_spec, workload.work_b.exact_spec
    if a != b:
        lines.append(f"matched by label: A ran {a}, B ran {b}")
    for side, models in (("A", workload.only_a), ("B", workload.only_b)):
        if models:
            lines.append(f"only in {side}: {', '.join(models)}")
    for model, (levels_a, levels_b) in workload.no_common_level.items():
        lines.append(f"{model}: no concurrency in common (A {levels_a}, B {levels_b})")
    return lines


def footer(comparison: Comparison) -> list[str]:
    lines = []
    for side, labels in (("A", comparison.only_a), ("B", comparison.only_b)):
        if labels:
            lines.append(f"Workloads only in {side}: {', '.join(labels)}.")
    marked = any(
        difference.a.generator_limited or difference.b.generator_limited
        for workload in comparison.workloads
        for row in workload.rows
        for difference in row.figures.values()
    )  # fmt: skip
    if marked:
        lines.append("* generator-limited: the load generator was the limit in at least one "
                     "trial; its replies/s is a lower bound for the server.")  # fmt: skip
    return lines


def plain_table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [list(COLUMNS), *rows]) for i in range(len(COLUMNS))]

    def line(cells: list[str] | tuple[str, ...]) -> str:
        return "  ".join(
            cell.rjust(width) if i in RIGHT else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(COLUMNS), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def render_text(comparison: Comparison) -> str:
    """The whole comparison as plain aligned text (what a pipe or a file gets)."""
    *files, rule = preamble(comparison)
    lines = [*files, *textwrap.wrap(rule, 100)]
    for workload in comparison.workloads:
        lines += ["", f"== {workload.label}", *(f"   ({note})" for note in notes(workload))]
        if workload.rows:
            lines += plain_table(table_rows(workload))
            lines.append(workload_verdict(workload))
    closing = footer(comparison)
    return "\n".join(lines + ([""] + closing if closing else [])) + "\n"


def print_rich(comparison: Comparison) -> None:
    """The same content on a terminal: rich tables, verdicts in colour."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    for line in preamble(comparison):
        console.print(line, highlight=False, markup=False)
    colours = {"B faster": "green", "B lower": "green", "B slower": "red", "B higher": "red"}
    for workload in comparison.workloads:
        console.print()
        table = Table(title=escape(workload.label), title_justify="left", caption_justify="left",
                      caption=escape("; ".join(notes(workload))) or None)  # fmt: skip
        for i, name in enumerate(COLUMNS):
            # escaped: rich would read "[min-max]" as a markup tag and drop it
            table.add_column(escape(name), justify="right" if i in RIGHT else "left")
        for i, cells in enumerate(table_rows(workload)):
            style = colours.get(cells[-1])
            text = [escape(cell) for cell in cells]
            table.add_row(*text[:-1], f"[{style}]{text[-1]}[/]" if style else text[-1],
                          end_section=(i % len(METRICS) == len(METRICS) - 1))  # fmt: skip
        if workload.rows:
            console.print(table)
            console.print(workload_verdict(workload), highlight=False)
        else:
            console.print(f"{workload.label}: " + "; ".join(notes(workload)), highlight=False)
    closing = footer(comparison)
    if closing:
        console.print()
        for line in closing:
            console.print(line, highlight=False, markup=False)


def to_json(comparison: Comparison) -> dict[str, Any]:
    """The comparison as plain data, for --json."""
    return {
        "a": comparison.a,
        "b": comparison.b,
        "threshold": comparison.threshold,
        "separation_chance_limit": SEPARATION_CHANCE,
        "all_levels": comparison.all_levels,
        "workloads": [
            {
                "label": workload.label,
                "spec_a": workload.work_a.exact_spec,
                "spec_b": workload.work_b.exact_spec,
                "verdict": workload_verdict(workload) if workload.rows else None,
                "only_a": workload.only_a,
                "only_b": workload.only_b,
                "no_common_level": {
                    m: {"a": a, "b": b} for m, (a, b) in workload.no_common_level.items()
                },
                "rows": [
                    {
                        "model": row.model,
                        "clients": row.clients,
                        "compared": row.compared,
                        "figures": {key: asdict(d) for key, d in row.figures.items()},
                    }
                    for row in workload.rows
                ],
            }
            for workload in comparison.workloads
        ],
        "only_a": comparison.only_a,
        "only_b": comparison.only_b,
    }


def main(
    path_a: Path,
    path_b: Path,
    threshold: float = DEFAULT_THRESHOLD,
    all_levels: bool = False,
    json_out: Path | None = None,
) -> int:
    """The command: print the comparison; a bad input is one line on stderr and exit 2."""
    try:
        comparison = compare_files(path_a, path_b, threshold, all_levels)
        if json_out:
            write_json_atomically(json_out, to_json(comparison))
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if sys.stdout.isatty():
        print_rich(comparison)
    else:
        sys.stdout.write(render_text(comparison))
    if json_out:
        print(f"wrote {json_out}", file=sys.stderr)
    return 0
