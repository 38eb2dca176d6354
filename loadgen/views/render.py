"""Everything a results folder can show, drawn from its files alone: figures, timeline, report."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from pathlib import Path

from loadgen.views.figures import plot_all
from loadgen.views.page import write_html
from loadgen.views.report import write_report
from loadgen.views.timeline import redraw


def render_all(results: Path, out: Path | None = None) -> list[Path]:
    """Draw a results.json (and the timeline.json beside it, if any) into ``out`` (default:
    its own folder); return the paths written, report.md and report.html last."""
    results = Path(results)
    out = out or results.parent
    timeline = results.parent / "timeline.json"
    if not timeline.exists():
        return [*plot_all(results, out), write_report(results, out), write_html(results, out)]
    # The timeline takes as long to draw as all the other figures: on a core of its own.
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        drawn = pool.submit(redraw, timeline, out)
        written = plot_all(results, out)
        written.append(drawn.result())
    return [*written, write_report(results, out), write_html(results, out)]
