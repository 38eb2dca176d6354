"""report.html: a results folder as one page a reader opens, mails, or projects, offline.

    python -m loadgen report results/latest/results.json [--out DIR]   (beside report.md)

One file: every figure inline as SVG with its values on hover, the style in the page, no
script, font or request from elsewhere. The first screen is the run's answer: the lesson's
sentences (``loadgen.views.lesson``) and the cores figure. Below, folded (``<details>``), one
section per workload (its table, figures and findings), the core sweep, the traced bursts, the
machine during the run, every other experiment's results found in the same folder
(``loadgen.views.others``), and how it was measured. Everything on the page is computed from
the folder's files, as report.md is.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt

from loadgen.analysis.results import (
    Results,
    RunKind,
    Timeline,
    load,
    load_timeline,
    write_text_atomically,
)
from loadgen.analysis.summary import Summary, baseline_of, median
from loadgen.views import markup, svg
from loadgen.views.figures import BUILDERS, machine_figure
from loadgen.views.lesson import lesson
from loadgen.views.markup import Section
from loadgen.views.others import sections as other_sections
from loadgen.views.report import (
    CAPTIONS,
    TABLE_HEADER,
    busiest,
    core_sweep_findings,
    interpreter_sentence,
    load_sweep_finding,
    machine_findings,
    preamble,
    sample_findings,
    table_rows,
    timeline_findings,
    workload_findings,
)
from servers.work import Work

STYLE = """
body{font:16px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1a1a1a;margin:0 auto;
max-width:1180px;padding:0 1.2em 3em}
h1{font-size:1.5em;margin:.6em 0 .1em}
.meta{color:#555;font-size:.85em;margin:0 0 .4em}
#lesson ul{margin:.3em 0;padding-left:1.2em}#lesson li{margin:.15em 0}
figure{margin:.6em 0}figure svg{max-width:100%;height:auto}
#fig-cores svg{width:100%;max-height:46vh}
.figures{display:flex;flex-wrap:wrap;gap:0 1.5em;align-items:flex-start}
.figures figure{flex:0 1 560px;min-width:0}.figures svg{width:100%}
figcaption{color:#555;font-size:.85em}
details{border-top:1px solid #ddd;padding:.2em 0}
summary{cursor:pointer;padding:.35em 0}
summary h2{display:inline;font-size:1.15em;margin:0}
.note{color:#555;font-size:.9em;margin-left:.6em}
.body{scroll-margin-top:3em}
.wide{overflow-x:auto}
table{border-collapse:collapse;font-size:.82em;margin:.5em 0}
th,td{padding:.2em .55em;border-bottom:1px solid #e4e4e4;text-align:left}
.n{text-align:right;font-variant-numeric:tabular-nums}
code{font-size:.92em;background:#f3f3f3;padding:0 .2em}
"""


MACHINE_CAPTION = (
    "The machine's capacity at each reading between rounds; then, run by run in the order "
    "measured, its work efficiency (a run below the line counts as disturbed and is measured "
    "again) and the cores used outside the bench or stolen from this virtual machine. Hover a "
    "reading, or a disturbed run, for its figures."
)
PANEL_CAPTIONS = {  # the bench's figures drawn for one workload
    "throughput": "Replies/s against clients in flight, closed loop: the median of trials, its "
    "band min-max. Hover a point for its figures.",
    "spectrum": "Latency by percentile at the highest concurrency, every trial's HdrHistogram "
    "merged. Hover a line for its percentiles.",
    "latency_load": "p50 and p99 latency against the rate achieved, open loop at a share of each "
    "model's own capacity; the star marks the knee.",
}


def _figure(results: Results, name: str, kind: RunKind, work: Work | None) -> str:
    """One of the bench's figures, drawn for one workload's runs (or all), inline."""
    runs = [run for run in results.runs_of(kind) if work is None or run.work == work]
    if not runs:
        return ""
    drawn = BUILDERS[name][1](results, runs)
    inline = svg.inline(drawn, f"{name}-{work.spec if work else 'all'}")
    plt.close(drawn)
    if work is None:
        return markup.figure(inline, CAPTIONS[name], id=f"fig-{name}")
    return markup.figure(inline, PANEL_CAPTIONS[name], id=f"fig-{name}-{_slug(work)}")


def _slug(work: Work) -> str:
    """A workload as a piece of an id: ``cpu=2ms`` -> ``cpu-2ms``."""
    return re.sub(r"[^a-z0-9]+", "-", work.spec.lower()).strip("-")


def workload_section(results: Results, summary: Summary, work: Work) -> Section:
    """A workload: its note (the fastest model, and how many times the baseline's rate), its
    table, findings and figures."""
    models = summary.models(RunKind.MATRIX, work)
    base = baseline_of(models)
    fastest = max(models, key=lambda m: summary.compared(m, work).rate)
    note = f"{len(models)} models; fastest {fastest}, "
    note += f"{summary.compared(fastest, work).rate:,.0f} replies/s"
    if base and base != fastest:
        ratio = summary.compared(fastest, work).rate / max(summary.compared(base, work).rate, 1e-9)
        note += f" ({ratio:.2f}x {base})"
    rows, notes = table_rows(summary, work)
    figures = "".join(_figure(results, name, kind, work)
                      for name, kind in (("throughput", RunKind.MATRIX),
                                         ("spectrum", RunKind.MATRIX),
                                         ("latency_load", RunKind.LOAD_SWEEP)))  # fmt: skip
    sweep = load_sweep_finding(summary, work) if work in summary.works(RunKind.LOAD_SWEEP) else None
    body = (f'<div class="wide">{markup.table(TABLE_HEADER, rows)}</div>'
            + "".join(f"<p>{markup.with_code(line)}</p>" for line in notes)
            + markup.sentences(workload_findings(summary, work) + ([sweep] if sweep else []))
            + f'<div class="figures">{figures}</div>')  # fmt: skip
    return Section(f"work-{_slug(work)}", work.spec, note, body)


def sweep_section(results: Results, summary: Summary) -> Section | None:
    if not results.runs_of(RunKind.CORE_SWEEP):
        return None
    runs = results.runs_of(RunKind.CORE_SWEEP)
    counts = sorted({run.cores_allowed for run in runs})
    note = f"{runs[0].work.spec}, {counts[0]} to {counts[-1]} cores"
    body = markup.sentences(core_sweep_findings(summary))
    return Section(
        "scaling",
        "Throughput against the cores allowed",
        note,
        body + _figure(results, "scaling", RunKind.CORE_SWEEP, None),
    )


def _drawn_figure(path: Path, name: str) -> str:
    """An SVG file drawn beside the results, inline; a file that is not one says so."""
    try:
        return markup.figure(svg.inline_text(path.read_text(encoding="utf-8"), name),
                             CAPTIONS[name], id=f"fig-{name}")  # fmt: skip
    except (OSError, UnicodeDecodeError, ValueError) as error:
        return f"<p>{markup.text(f'{path.name} could not be shown: {error}')}</p>"


def timeline_section(folder: Path, timeline: Timeline | None) -> Section | None:
    """The traced bursts: the timeline figure(s) drawn beside the results, and their findings."""
    drawn = [name for name in ("timeline", "timeline_gil") if (folder / f"{name}.svg").exists()]
    if not timeline and not drawn:
        return None
    figures = "".join(_drawn_figure(folder / f"{name}.svg", name) for name in drawn)
    lines = timeline_findings(timeline)
    note = f"one burst of {timeline.burst} requests per model" if timeline else ""
    return Section("timeline", "Traced bursts: who ran when", note,
                   markup.sentences(lines) + figures)  # fmt: skip


def measured_section(results: Results, summary: Summary) -> Section:
    lines = [line for line in preamble(results.metadata, summary.models())[2:] if line]
    return Section("measured", "How this was measured", results.metadata.date[:16].replace(
        "T", " "), markup.sentences(lines + sample_findings(summary)))  # fmt: skip


def machine_note(results: Results) -> str:
    """The machine during the run in a line: the capacity read between rounds, the most CPU
    stolen and used outside the bench over a run, and how many runs were measured again."""
    capacity = [probe.capacity for probe in results.probes]
    note = (f"capacity {median(capacity):.2f}x one process ({min(capacity):.2f}-"
            f"{max(capacity):.2f}); " if capacity else "capacity not read; ")  # fmt: skip
    found = busiest(results)
    if found:
        note += f"steal at most {found[0]:.1%}, others at most {found[1]:.1f} cores; "
    disturbed = len(results.superseded)
    return note + f"{disturbed} run{'' if disturbed == 1 else 's'} measured again"


def machine_section(results: Results, summary: Summary, note: str) -> Section:
    """The machine during the run: its note (``machine_note``), findings, and figure."""
    drawn = machine_figure(results)
    body = markup.sentences(machine_findings(summary))
    if drawn:
        body += markup.figure(svg.inline(drawn, "machine"), MACHINE_CAPTION, id="fig-machine")
        plt.close(drawn)
    return Section("machine", "The machine during this run", note, body)


def render_html(
    results: Results, folder: Path, drawn: Path | None = None, timeline: Timeline | None = None
) -> str:
    """The page for ``results``: other experiments' files are read from ``folder``, the
    timeline's SVG from ``drawn`` (default: ``folder``)."""
    summary = Summary(results)
    metadata = results.metadata
    title = f"UDP echo server: {len(summary.models())} concurrency models compared"
    subtitle = (
        f"{metadata.cpu_model}, {metadata.cores} cores · "
        f"{metadata.date[:16].replace('T', ' ')} · {interpreter_sentence(metadata)}"
    )
    sections = [workload_section(results, summary, work) for work in summary.works()]
    found = (sweep_section(results, summary), timeline_section(drawn or folder, timeline))
    sections += [section for section in found if section]
    machine = machine_note(results)  # in its section's summary, and under the lesson
    sections.append(machine_section(results, summary, machine))
    sections += other_sections(folder)
    sections.append(measured_section(results, summary))
    head = (
        f'<meta charset="utf-8"><meta name="viewport" content="width=device-width, '
        f'initial-scale=1"><title>{markup.text(title)}</title><style>{STYLE}</style>'
    )
    return (f'<!DOCTYPE html><html lang="en"><head>{head}</head><body>'
            f"<h1>{markup.text(title)}</h1><p class=meta>{markup.with_code(subtitle)}</p>"
            f'<section id="lesson">{markup.sentences(lesson(summary))}<p class=meta><a '
            f'href="#machine-body">The machine during this run</a>: '
            f"{markup.text(machine)}.</p></section>"
            f"{_figure(results, 'cores', RunKind.MATRIX, None)}"
            + "".join(markup.fold(section) for section in sections)
            + "</body></html>\n")  # fmt: skip


def write_html(results_path: Path, out: Path | None = None) -> Path:
    """report.html for a results.json, from the files in its folder; returns its path."""
    results = load(results_path)
    folder = Path(results_path).parent
    out = out or folder
    saved = folder / "timeline.json"
    timeline = load_timeline(saved) if saved.exists() else None
    path = out / "report.html"
    write_text_atomically(path, render_html(results, folder, out, timeline))
    return path
