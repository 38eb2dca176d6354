"""HdrHistogram's percentile distribution, the text its plotter and wrk2's users read.

    python -m loadgen hgrm results/latest/results.json [--model M] [--work W] [--clients C]
                           [--out DIR]

One file per measured run (a model, a workload, a level, a trial) whose latencies the results
file keeps whole: ``<model>_<work>_<kind>-<level>_t<trial>.hgrm``, in milliseconds, the
latencies from the scheduled send (corrected for coordinated omission in open loop); in open
loop ``...uncorrected.hgrm`` beside it, from the actual send. Written by hdrh's own
``output_percentile_distribution``, so any reader of that format reads them.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

from loadgen.analysis.results import Run, load
from loadgen.generator import stats

MS = 1000.0  # the files are in milliseconds; the histograms hold microseconds


def distribution(encoded: str) -> str:
    """The percentile distribution of an encoded histogram, in milliseconds."""
    histogram, out = stats.decode(encoded), io.BytesIO()
    histogram.output_percentile_distribution(out, MS)
    # hdrh 0.10 scales the mean to the unit asked but leaves the standard deviation in the
    # histogram's own (microseconds): put it in milliseconds too.
    scaled = f"{histogram.get_stddev() / MS:12.{histogram.significant_figures}f}"
    return re.sub(r"(StdDeviation   = )\s*[0-9.]+", lambda m: m.group(1) + scaled,
                  out.getvalue().decode("ascii"))  # fmt: skip


def name(run: Run) -> str:
    """A file name for ``run``, safe on any file system; an attempt measured again because the
    machine was busy keeps its own (``_a1``...), beside the one that counted."""
    work = re.sub(r"[^A-Za-z0-9.=-]+", "_", run.work.spec)
    again = f"_a{run.attempt}" if run.attempt else ""
    return f"{run.model}_{work}_{run.kind.value}-{run.level:g}_t{run.trial}{again}"


def chosen(runs: tuple[Run, ...], model: str | None, work: str | None,
           clients: int | None) -> list[Run]:  # fmt: skip
    """The runs asked for, each with its latencies kept (a file from before has none)."""
    return [run for run in runs if run.loadgen.histogram
            and model in (None, run.model) and work in (None, run.work.spec)
            and clients in (None, run.loadgen.concurrency)]  # fmt: skip


def write_all(results_path: Path, out: Path | None = None, model: str | None = None,
              work: str | None = None, clients: int | None = None) -> list[Path]:  # fmt: skip
    """Write the distributions of the runs asked for into ``out`` (default: ``hgrm/`` beside
    the results file); ValueError when the file cannot be read or no run matches."""
    results = load(results_path)
    runs = chosen(results.runs, model, work, clients)
    if not runs:
        raise ValueError(f"no run in {results_path} matches: model {model or 'any'}, work "
                         f"{work or 'any'}, clients {clients or 'any'}")  # fmt: skip
    out = out or Path(results_path).parent / "hgrm"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for run in runs:
        for suffix, encoded in (("", run.loadgen.histogram),
                                (".uncorrected", run.loadgen.histogram_uncorrected)):  # fmt: skip
            if encoded:
                path = out / f"{name(run)}{suffix}.hgrm"
                path.write_text(distribution(encoded), encoding="utf-8")
                written.append(path)
    return written
