"""Typed results: schema 2 round-trips, schema 1 still loads and renders, and a malformed file
is one clear ValueError (one line and exit 2 on the command line).

Schema 1 is the reference run of 25 November 12:00 as it was committed (``tests/data``, gzipped:
the reference in ``results/`` has since been replaced by a schema 2 run)."""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT
from test_compare import results, trials

from loadgen.analysis.results import (
    SCHEMA,
    Results,
    RunKind,
    load,
    load_timeline,
    parse,
    upgrade_schema_1,
)
from loadgen.generator.result import Latency
from loadgen.harness.machine import TICKS_PER_S, MachineSample, machine_sample, machine_window
from servers.work import parse as parse_work

SCHEMA_1 = ROOT / "tests" / "data"
QUIET = {"seconds": 0.8, "cpus": 2, "busy_cores": 1.1, "steal_share": 0.0,
         "load_1m_start": 1.2, "load_1m_end": 1.3}  # fmt: skip


@pytest.fixture(scope="module")
def old_reference(tmp_path_factory) -> Path:
    """A folder holding the schema 1 reference's results.json and timeline.json."""
    folder = tmp_path_factory.mktemp("schema1")
    for name in ("results.json", "timeline.json"):
        (folder / name).write_bytes(gzip.decompress((SCHEMA_1 / f"schema1-{name}.gz").read_bytes()))
    return folder


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_schema_1_reference_loads_converted_and_is_never_rewritten(old_reference):
    before = digest(old_reference / "results.json")
    raw = json.loads((old_reference / "results.json").read_text(encoding="utf-8"))
    assert raw["schema"] == 1
    data = load(old_reference / "results.json")
    assert isinstance(data, Results) and data.schema == SCHEMA == 3
    assert len(data.runs) == len(raw["runs"]) and len(data.servers) == len(raw["servers"])
    first = data.runs[0]
    assert first.machine is None  # schema 1 measured no machine window
    assert first.loadgen.latency_us.count == raw["runs"][0]["loadgen"]["latency_us"]["count"]
    assert first.loadgen.latency_us.p99 == raw["runs"][0]["loadgen"]["latency_us"]["p99"]
    assert data.metadata.server_python and data.metadata.server_python.version == "3.13.0"
    assert data.servers[0].stopped and data.servers[0].stopped.handled > 0
    assert digest(old_reference / "results.json") == before


def test_schema_1_without_sample_counts_gets_none_and_keeps_the_rest(old_reference):
    raw = json.loads((old_reference / "results.json").read_text(encoding="utf-8"))
    for run in raw["runs"]:
        del run["loadgen"]["latency_us"]["count"]
    upgraded = upgrade_schema_1(raw)
    assert upgraded["schema"] == 2 and "count" not in raw["runs"][0]["loadgen"]["latency_us"]
    data = parse(raw)
    assert {run.loadgen.latency_us.count for run in data.runs} == {None}
    assert data.runs[5].loadgen.throughput_rps == raw["runs"][5]["loadgen"]["throughput_rps"]


@pytest.mark.slow
def test_the_schema_1_reference_renders_its_report_and_figures(tmp_path, old_reference):
    from loadgen.views.figures import FIGURES, plot_all
    from loadgen.views.report import write_report

    written = plot_all(old_reference / "results.json", tmp_path)
    assert sorted(path.stem for path in written) == sorted(FIGURES)
    assert all(path.stat().st_size > 10_000 for path in written)
    # the timeline.json beside the results file is read, wherever the report is written
    report = write_report(old_reference / "results.json", tmp_path).read_text(encoding="utf-8")
    assert "## What this shows" in report and "In the traced burst of" in report
    assert "With cpu=2ms and 64 clients in flight, the blocking loop answered" in report
    # schema 1 measured no machine window: no verdict either way, no flag in a table
    assert "stayed disturbed" not in report and "(disturbed)" not in report


def test_a_schema_2_file_reads_as_schema_3_and_round_trips(tmp_path):
    machine = {**QUIET, "a field from a newer writer": [1, 2]}
    data = results(trials("threads", "echo", 16, [100, 104, 98], machine=machine)
                   + trials("blocking", "echo", 16, [0]))  # fmt: skip
    assert data.probes == () and {run.attempt for run in data.runs} == {0}
    plain = data.to_dict()
    assert plain["schema"] == 3 and plain["runs"][0]["machine"]["a field from a newer writer"]
    assert parse(plain) == data
    assert parse(json.loads(json.dumps(plain))).to_dict() == plain
    path = tmp_path / "results.json"
    path.write_text(json.dumps(plain), encoding="utf-8")
    assert load(path) == data


def test_the_converted_reference_round_trips_as_schema_2(old_reference):
    data = load(old_reference / "results.json")
    assert parse(data.to_dict()) == data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(schema=4), "schema is 4; this version reads schemas 1, 2, 3"),
        (lambda d: d.pop("metadata"), "results lacks metadata"),
        (lambda d: d["runs"][0]["loadgen"].pop("sent"), "results.runs[0].loadgen lacks sent"),
        (lambda d: d["runs"][0]["loadgen"].update(sent="many"),
         "results.runs[0].loadgen.sent is a string, not int"),
        (lambda d: d["runs"][0].update(generator_limited=1),
         "results.runs[0].generator_limited is an integer, not bool"),
        (lambda d: d["runs"][0]["loadgen"]["latency_us"].pop("count"),
         "results.runs[0].loadgen.latency_us lacks count"),
        (lambda d: d["runs"][0].pop("machine"), "results.runs[0] lacks machine"),
        (lambda d: d["runs"][0].update(kind="sideways"), "unknown RunKind 'sideways'"),
        (lambda d: d["runs"][0]["loadgen"].update(lost=0), "sent != received + lost + in_flight"),
        (lambda d: d.update(runs={}), "results.runs is an object, not a list"),
        (lambda d: d["metadata"]["calibration"]["cpu=2ms"].update(iterations=None),
         "results.metadata.calibration.cpu=2ms.iterations is null, not int"),
    ],
)  # fmt: skip
def test_a_malformed_file_is_a_clear_value_error(tmp_path, change, message):
    plain = results(trials("threads", "echo", 16, [100])).to_dict()
    change(plain)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(plain), encoding="utf-8")
    with pytest.raises(ValueError) as caught:
        load(path)
    text = str(caught.value)
    assert text.startswith(f"{path} is not a valid results file: ") and "\n" not in text
    assert message in text


@pytest.mark.slow
@pytest.mark.parametrize("command", ["report", "plot"])
def test_a_malformed_file_on_the_command_line_is_one_line_and_exit_2(tmp_path, command):
    plain = results(trials("threads", "echo", 16, [100])).to_dict()
    del plain["runs"][0]["loadgen"]["histogram"]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(plain), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "loadgen", command, str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (f"error: {path} is not a valid results file: "
                           "results.runs[0].loadgen lacks histogram\n")  # fmt: skip


def test_a_timeline_without_a_schema_still_loads_and_a_newer_one_is_refused(
    tmp_path, old_reference
):
    saved = old_reference / "timeline.json"  # written before timeline.json had a schema
    raw = json.loads(saved.read_text(encoding="utf-8"))
    old = load_timeline(saved)
    assert "schema" not in raw and old.schema == 1 and old.traces
    metadata = old.metadata
    done = parse_work("cpu=28337it")
    assert metadata is not None and metadata.told_as_asked(done).spec == "cpu=2ms"
    other = parse_work("cpu=999it")  # calibrated from something else: as it is
    assert metadata.told_as_asked(other) == other
    newer = tmp_path / "timeline.json"
    newer.write_text(json.dumps({**raw, "schema": 2}), encoding="utf-8")
    with pytest.raises(ValueError, match="timeline.json of schema 2; this version reads schema 1"):
        load_timeline(newer)
    newer.write_text(json.dumps({**raw, "metadata": {"date": "today"}}), encoding="utf-8")
    with pytest.raises(ValueError, match="metadata lacks python"):
        load_timeline(newer)


def test_latency_keeps_its_sample_count():
    summary = {"min": 1, "mean": 2.0, "p50": 2, "p90": 3, "p99": 4, "p999": 5, "max": 6}
    assert Latency.from_dict({**summary, "count": 640}).count == 640
    with pytest.raises(ValueError, match="Latency lacks count"):
        Latency.from_dict(summary)


def test_the_machine_window_from_two_samples():
    hz = TICKS_PER_S
    # user nice system idle iowait irq softirq steal, summed over 2 CPUs, 1 s apart
    before = MachineSample(10.0, 1.5, (1000, 0, 500, 8000, 10, 0, 40, 100), 2)
    after = MachineSample(11.0, 1.7, (1000 + hz, 0, 500 + hz * 2 // 5, 8000 + hz // 4, 10, 0,
                                      40 + hz // 10, 100 + hz // 4), 2)  # fmt: skip
    window = machine_window(before, after)
    assert window == {"seconds": 1.0, "cpus": 2, "busy_cores": 1.5, "steal_share": 0.125,
                      "load_1m_start": 1.5, "load_1m_end": 1.7}  # fmt: skip
    assert machine_window(None, after) is None and machine_window(after, before) is None
    now = machine_sample()  # this is Linux
    assert now is not None and now.cpus >= 1 and len(now.ticks) == 8


def kind_literals(source: str) -> list[str]:
    """Where ``source`` spells a run kind as a string instead of a ``RunKind`` (its own class
    body aside, where the values are defined)."""
    tree = ast.parse(source)
    inside = {id(node) for klass in ast.walk(tree)
              if isinstance(klass, ast.ClassDef) and klass.name == "RunKind"
              for node in ast.walk(klass)}  # fmt: skip
    values = {kind.value for kind in RunKind}
    return [f"line {node.lineno}: {node.value!r}" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in values
            and id(node) not in inside]  # fmt: skip


def test_a_run_kind_is_never_spelled_as_a_string_in_the_code():
    for path in sorted((ROOT / "loadgen").rglob("*.py")):
        assert kind_literals(path.read_text(encoding="utf-8")) == [], path


def test_the_run_kind_check_can_fail():
    assert kind_literals('summary.models("matrix", work)') == ["line 1: 'matrix'"]
    assert kind_literals("summary.models(RunKind.MATRIX, work)") == []


def test_a_workload_is_one_value_from_the_file_and_back():
    """A run's workload is read once into a ``Work``: as done (the file's ``cpu=32121it``) and
    as asked (the calibration's ``cpu=2ms``); written back, the file keeps the form done."""
    data = results(trials("threads", "cpu=32121it", 16, [500, 505])
                   + trials("threads", "io=5ms", 16, [90, 91]))  # fmt: skip
    cpu, io = data.runs[0].work, data.runs[2].work
    assert (cpu.spec, cpu.exact_spec, cpu.kind) == ("cpu=2ms", "cpu=32121it", "cpu")
    assert (io.spec, io.exact_spec, io.kind) == ("io=5ms", "io=5ms", "io")
    assert [run["work"] for run in data.to_dict()["runs"]] == ["cpu=32121it"] * 2 + ["io=5ms"] * 2
    assert parse(data.to_dict()) == data


def test_a_workload_this_version_cannot_read_is_named():
    broken = trials("threads", "cpu=fast", 16, [500])
    with pytest.raises(ValueError, match=r"results.runs\[0\].work: bad work term 'cpu=fast'"):
        results(broken)


def test_an_interrupted_write_keeps_the_earlier_file_whole_and_leaves_no_temporary(tmp_path):
    from loadgen.analysis.results import write_text_atomically

    page = tmp_path / "report.html"
    write_text_atomically(page, "<h1>earlier</h1>")
    with pytest.raises(UnicodeEncodeError):  # a write that fails half-way, as Ctrl-C would
        write_text_atomically(page, "<h1>new</h1>" + "\ud800")
    assert page.read_text(encoding="utf-8") == "<h1>earlier</h1>"
    assert [path.name for path in tmp_path.iterdir()] == ["report.html"]
