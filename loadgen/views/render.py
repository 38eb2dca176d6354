"""Everything a results folder can show, drawn from its files alone: figures, timeline, report."""

from __future__ import annotations

from pathlib import Path

from loadgen.views.figures import plot_all
from loadgen.views.report import write_report
from loadgen.views.timeline import redraw


def render_all(results: Path, out: Path | None = None) -> list[Path]:
    """Draw a results.json (and the timeline.json beside it, if any) into ``out`` (default:
    its own folder); return the paths written, the report last."""
    results = Path(results)
    out = out or results.parent
    written = plot_all(results, out)
    if (results.parent / "timeline.json").exists():
        written.append(redraw(results.parent / "timeline.json", out))
    written.append(write_report(results, out))
    return written
