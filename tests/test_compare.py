"""python -m loadgen compare: ratios, the noise rule, matching by label, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT

from loadgen.analysis.results import Results, load, parse
from loadgen.views.compare import (
    BETTER,
    CANNOT_TELL,
    NO_DATA,
    NOISE,
    WORSE,
    compare,
    compare_files,
    render_text,
    separation_chance,
)

REFERENCE = ROOT / "results" / "reference" / "results.json"


def trials(
    model: str,
    work: str,
    clients: int,
    rates: list[float],
    p50: float = 1000.0,
    limited: bool = False,
    machine: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Matrix runs shaped like the bench's (schema 2), one per rate; ``p50`` is the median
    latency at 100 replies/s and scales inversely with the rate, as in a closed loop (a server
    twice as fast answers each request in half the time). A rate of 0 is a trial where nothing
    came back: no latency at all, as the engine records it. ``machine``: the whole machine over
    each run's window (None: not measured)."""
    runs = []
    for trial, rate in enumerate(rates):
        received = round(rate * 0.8)
        scale = 100 / rate if rate else None
        latency = (
            {key: None for key in ("min", "mean", "p50", "p90", "p99", "p999", "max")}
            | {"count": 0}
            if scale is None
            else {"min": 1, "mean": p50 * scale, "p50": p50 * scale, "p90": 1.5 * p50 * scale,
                  "p99": 2 * p50 * scale, "p999": 3 * p50 * scale, "max": 4 * p50 * scale,
                  "count": received}
        )  # fmt: skip
        runs.append({
            "kind": "matrix", "model": model, "work": work, "trial": trial, "cores_allowed": 2,
            "server": {"pid": 1, "cpu_user_s": 0.5, "cpu_system_s": 0.1, "cores_used": 0.75,
                       "peak_rss_bytes": 20_000_000, "threads": 9, "processes": 1},
            "loadgen": {
                "target": "127.0.0.1:40000", "mode": "closed", "concurrency": clients,
                "rate": None, "arrival": None, "duration_s": 0.8, "warmup_s": 0.2,
                "timeout_s": 1.0, "payload_size": 64, "encoding": "utf-8", "procs": 1,
                "started_at": "2026-11-25T10:00:00+00:00", "sent": received + 2,
                "received": received, "lost": 2, "in_flight": 0, "late": 0, "duplicate": 0,
                "corrupt": 0, "server_errors": 0, "socket_errors": 0, "accounting_ok": True,
                "throughput_rps": rate, "latency_us": latency, "latency_uncorrected_us": None,
                "series": [], "histogram": "",
                "generator": {"cpu_cores": 1.0 if limited else 0.3, "cpu_us_per_request": 20.0,
                              "achieved_send_rps": rate, "behind": False, "lag_us": None,
                              "saturated": limited},
            },
            "generator_limited": limited,
            "machine": machine,
        })  # fmt: skip
    return runs


def results(runs: list[dict[str, Any]], iterations: int = 32121, **metadata: Any) -> Results:
    """A whole results file around ``runs``, read by the loader's own parser."""
    data = {
        "schema": 2,
        "metadata": {
            "date": "2026-11-25T10:00:00+00:00", "python": "3.11.7", "gevent": "26.9.0",
            "greenlet": "3.5.6", "cpu_model": "AMD EPYC", "cores": 2, "os": "Linux",
            "git_commit": "0123456789abcdef", "git_dirty": False, "command": "test",
            "settings": {"trials": 3},
            "calibration": {"cpu=2ms": {"iterations": iterations, "ms": 2.0}},
        } | metadata,
        "runs": runs,
        "servers": [],
    }  # fmt: skip
    return parse(data)


def write(folder: Path, name: str, data: Results | dict) -> Path:
    path = folder / f"{name}.json"
    plain = data.to_dict() if isinstance(data, Results) else data
    path.write_text(json.dumps(plain), encoding="utf-8")
    return path


def only_row(comparison):
    [workload] = comparison.workloads
    [row] = workload.rows
    return row


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "loadgen", "compare", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_fabricated_files_load_like_bench_output(tmp_path):
    path = write(tmp_path, "a", results(trials("threads", "echo", 16, [100, 110, 120])))
    assert load(path).runs[0].loadgen.throughput_rps == 100


def test_identical_files_give_ratio_one_and_nothing_significant():
    comparison = compare_files(REFERENCE, REFERENCE, all_levels=True)
    rows = [row for workload in comparison.workloads for row in workload.rows]
    matrix = {(r.work, r.model, r.loadgen.concurrency) for r in load(REFERENCE).runs_of("matrix")}
    assert len(rows) == len(matrix)  # every workload, model and level: all of them
    for row in rows:
        for difference in row.figures.values():
            assert difference.ratio == pytest.approx(1.0)
            assert difference.verdict == NOISE
    assert comparison.only_a == comparison.only_b == []


@pytest.mark.slow
def test_reference_against_itself_on_the_command_line():
    done = run_cli(str(REFERENCE), str(REFERENCE.parent))  # a folder means its results.json
    assert done.returncode == 0, done.stderr
    data = load(REFERENCE)
    models = {r.model for r in data.runs_of("matrix")}
    n = len(models)
    assert f"B faster for 0 of {n} models beyond noise; {n} within noise" in done.stdout
    ratios = [line.split()[-3] for line in done.stdout.splitlines() if line.endswith("noise")]
    assert ratios and set(ratios) == {"1.00"}
    assert "at 64 clients" in done.stdout
    assert f"Python {data.metadata.python}" in done.stdout


def test_twice_as_fast_with_separate_trials_is_significant_and_marked():
    a = results(trials("threads", "echo", 16, [100, 104, 98]))
    b = results(trials("threads", "echo", 16, [200, 196, 205]))
    row = only_row(compare(a, b))
    assert row.figures["throughput_rps"].ratio == pytest.approx(2.0)
    assert row.figures["throughput_rps"].verdict == BETTER
    assert row.figures["p50_ms"].verdict == BETTER  # half the latency: better for B
    text = render_text(compare(a, b))
    assert "B faster" in text and "B lower" in text
    assert "B faster for 1 of 1 model beyond noise." in text
    # and seen from the other side, the same difference is a loss: the rule is symmetric
    assert only_row(compare(b, a)).figures["throughput_rps"].verdict == WORSE
    assert "B slower" in render_text(compare(b, a))


def test_overlapping_trials_are_not_significant_however_far_the_medians():
    a = results(trials("threads", "echo", 16, [100, 110, 200]))
    b = results(trials("threads", "echo", 16, [150, 160, 170]))
    difference = only_row(compare(a, b)).figures["throughput_rps"]
    assert difference.ratio == pytest.approx(160 / 110)
    assert difference.overlap and difference.verdict == NOISE


def test_a_clean_separation_below_the_threshold_is_noise_until_the_threshold_drops():
    a = results(trials("threads", "echo", 16, [100, 101, 102]))
    b = results(trials("threads", "echo", 16, [103, 104, 105]))
    assert only_row(compare(a, b)).figures["throughput_rps"].verdict == NOISE
    assert only_row(compare(a, b, threshold=0.01)).figures["throughput_rps"].verdict == BETTER


def test_one_trial_a_side_cannot_tell_even_at_twice_the_speed():
    a = results(trials("threads", "echo", 16, [100]))
    b = results(trials("threads", "echo", 16, [200]))
    difference = only_row(compare(a, b)).figures["throughput_rps"]
    assert difference.ratio == pytest.approx(2.0) and difference.verdict == CANNOT_TELL
    text = render_text(compare(a, b))
    assert "n=1: cannot tell" in text
    assert not [line for line in text.splitlines() if line.endswith(("B faster", "B lower"))]


def test_two_trials_a_side_separate_by_luck_too_often_to_count():
    assert separation_chance(1, 1) == 1.0
    assert separation_chance(2, 2) == pytest.approx(1 / 3)
    assert separation_chance(3, 3) == pytest.approx(0.1)
    a = results(trials("threads", "echo", 16, [100, 101]))
    b = results(trials("threads", "echo", 16, [200, 201]))
    assert only_row(compare(a, b)).figures["throughput_rps"].verdict == CANNOT_TELL
    assert "n=2: cannot tell" in render_text(compare(a, b))


def test_workloads_are_matched_by_label_not_by_iteration_count():
    a = results(trials("threads", "cpu=32121it", 16, [500, 505, 510])
                + trials("threads", "cpu=500it", 16, [9, 9, 9]), iterations=32121)  # fmt: skip
    b = results(trials("threads", "cpu=22931it", 16, [350, 352, 355])
                + trials("threads", "cpu=600it", 16, [9, 9, 9]), iterations=22931)  # fmt: skip
    comparison = compare(a, b)
    [workload] = comparison.workloads
    assert workload.label == "cpu=2ms"
    assert (workload.work_a.exact_spec, workload.work_b.exact_spec) == ("cpu=32121it",
                                                                        "cpu=22931it")  # fmt: skip
    assert workload.rows[0].figures["throughput_rps"].verdict == WORSE
    # uncalibrated counts given by hand are different work: not matched, but listed
    assert comparison.only_a == ["cpu=500it"] and comparison.only_b == ["cpu=600it"]
    text = render_text(comparison)
    assert "matched by label: A ran cpu=32121it, B ran cpu=22931it" in text
    assert "Workloads only in A: cpu=500it." in text and "Workloads only in B: cpu=600it." in text


def test_a_model_in_one_file_only_is_reported_not_dropped():
    a = results(trials("threads", "echo", 16, [100, 101, 102])
                + trials("gevent", "echo", 16, [90, 91, 92]))  # fmt: skip
    b = results(trials("threads", "echo", 16, [100, 101, 102]))
    comparison = compare(a, b)
    assert comparison.workloads[0].only_a == ["gevent"]
    assert "only in A: gevent" in render_text(comparison)


def test_the_compared_level_is_the_highest_in_both_and_all_levels_shows_the_rest():
    a = results([run for level in (1, 4, 16, 64)
                 for run in trials("threads", "echo", level, [100, 101, 102])])  # fmt: skip
    b = results([run for level in (1, 16)
                 for run in trials("threads", "echo", level, [100, 101, 102])])  # fmt: skip
    assert [r.clients for r in compare(a, b).workloads[0].rows] == [16]
    rows = compare(a, b, all_levels=True).workloads[0].rows
    assert [(r.clients, r.compared) for r in rows] == [(1, False), (16, True)]
    assert "echo at 16 clients" in render_text(compare(a, b, all_levels=True))


def test_generator_limited_cells_are_marked():
    a = results(trials("threads", "echo", 16, [100, 101, 102], limited=True))
    b = results(trials("threads", "echo", 16, [100, 101, 102]))
    text = render_text(compare(a, b))
    assert "101* [100-102] n=3" in text and "101 [100-102] n=3" in text
    assert "1 generator-limited (*)" in text
    assert "* generator-limited" in text


def test_a_side_that_answered_nothing_has_no_ratio_and_no_latency():
    a = results(trials("threads", "echo", 16, [0, 0, 0]))
    b = results(trials("threads", "echo", 16, [100, 101, 102]))
    row = only_row(compare(a, b))
    assert row.figures["throughput_rps"].ratio is None
    assert row.figures["throughput_rps"].verdict == BETTER  # every trial of B beat every of A
    assert row.figures["p50_ms"].verdict == NO_DATA


def test_server_python_is_shown_when_recorded(tmp_path):
    a = results(trials("threads", "echo", 16, [100]), server_python={"version": "3.13.0"})
    b = results(trials("threads", "echo", 16, [100]))
    assert "Python 3.11.7 (servers: Python 3.13.0)" in render_text(compare(a, b))


def test_json_output_holds_the_comparison(tmp_path):
    a = write(tmp_path, "a", results(trials("threads", "echo", 16, [100, 104, 98])))
    b = write(tmp_path, "b", results(trials("threads", "echo", 16, [200, 196, 205])))
    out = tmp_path / "deep" / "comparison.json"
    done = run_cli(str(a), str(b), "--json", str(out), "--threshold", "10%")
    assert done.returncode == 0, done.stderr
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert saved["threshold"] == pytest.approx(0.10)
    figure = saved["workloads"][0]["rows"][0]["figures"]["throughput_rps"]
    assert figure["ratio"] == pytest.approx(2.0) and figure["verdict"] == BETTER
    assert figure["a"]["n"] == 3 and figure["b"]["low"] == 196
    assert saved["a"]["path"] == str(a)


@pytest.mark.slow
@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "cannot read"),
        ("not json", "cannot read"),
        ("not results", "is not a valid results file"),
        ("runs not objects", "is not a valid results file"),
        ("nothing in common", "no model and workload measured at the same concurrency"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, case, message):
    good = write(tmp_path, "good", results(trials("threads", "echo", 16, [100, 101, 102])))
    bad = {
        "missing": tmp_path / "nowhere.json",
        "not json": tmp_path / "text.json",
        "not results": write(tmp_path, "other", {"schema": 1, "traces": {}}),
        "runs not objects": write(tmp_path, "odd", {**results([]).to_dict(), "runs": [1, "x"]}),
        "nothing in common": write(
            tmp_path, "disjoint", results(trials("threads", "io=5ms", 16, [100, 101, 102]))
        ),
    }[case]
    (tmp_path / "text.json").write_text("model,rate\nthreads,100\n", encoding="utf-8")
    done = run_cli(str(good), str(bad))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("error: ") and message in done.stderr
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr


def test_a_bad_threshold_is_a_usage_error():
    done = run_cli(str(REFERENCE), str(REFERENCE), "--threshold", "lots")
    assert done.returncode == 2 and "is not a percentage" in done.stderr


def test_compare_is_a_view_that_never_loads_the_bench_or_a_server():
    code = "import sys, loadgen.views.compare; print('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True)  # fmt: skip
    loaded = set(done.stdout.split())
    assert "loadgen.views.compare" in loaded
    forbidden = {"loadgen.experiments.bench", "loadgen.generator.engine",
                 "loadgen.generator.runner", "loadgen.generator.display"}  # fmt: skip
    assert not loaded & forbidden
    # the pure pieces only (the report's work efficiency parses a --work): no model module
    pure = {"servers.protocol", "servers.work"}
    assert not {m for m in loaded if m.startswith("servers.") and m not in pure}
