"""make bench end to end, small: results that validate, survive Ctrl-C, and archive."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from helpers import ROOT, bench, wait_gone

from loadgen.analysis.results import SCHEMA, archive, load, parse
from loadgen.experiments.bench import results_folder
from loadgen.views import hgrm
from servers.work import parse as parse_work


@pytest.mark.slow
def test_tiny_bench_writes_a_valid_results_file(tiny_bench):
    out, _ = tiny_bench
    data = load(out / "results.json")
    assert data.schema == SCHEMA == 3
    kinds = [run.kind for run in data.counted]  # a busy machine's attempts are measured again
    cores = len(os.sched_getaffinity(0))
    assert kinds.count("matrix") == 2 * 2  # two models, two levels
    assert kinds.count("load_sweep") == 2 * 2  # two models, two loads
    assert kinds.count("core_sweep") == 2 * cores
    assert {run.model for run in data.runs} == {"blocking", "threads"}
    metadata = data.metadata
    assert metadata.calibration["cpu=2ms"].iterations > 0  # the core sweep's work
    assert metadata.settings["concurrency"] == [1, 4]
    for run in data.runs:
        assert run.server.cores_used is not None and run.server.processes >= 1
        assert run.loadgen.lost == 0 or run.kind == "load_sweep"
        assert run.loadgen.latency_us.count == run.loadgen.received  # samples of the p99
    stopped = [server.stopped for server in data.servers]
    assert all(event and event.event == "stopped" for event in stopped)
    assert all(event.per_worker for event in stopped)  # type: ignore[union-attr]


@pytest.mark.slow
def test_each_run_records_the_machine_over_its_window(tiny_bench):
    out, _ = tiny_bench
    data = load(out / "results.json")
    for run in data.runs:
        machine = run.machine
        assert machine is not None  # this is Linux: /proc is there
        assert machine.seconds == pytest.approx(run.loadgen.duration_s, abs=0.05)
        assert machine.cpus == os.cpu_count() and machine.load_1m_start >= 0
        assert 0 <= machine.steal_share <= 1  # type: ignore[operator]
        # everything busy on the machine includes the server and the generator; /proc/stat
        # counts in ticks (10 ms), so a light 0.2 s window can show a tenth of a core as none
        assert machine.busy_cores >= run.server.cores_used - 0.25  # type: ignore[operator]


@pytest.mark.slow
def test_the_saved_file_round_trips_through_the_typed_results(tiny_bench):
    out, _ = tiny_bench
    raw = json.loads((out / "results.json").read_text())
    assert raw["schema"] == 3
    assert parse(raw).to_dict() == raw


@pytest.mark.slow
def test_core_sweep_pins_the_server(tiny_bench):
    out, _ = tiny_bench
    data = load(out / "results.json")
    pinned = sorted({run.cores_allowed for run in data.runs_of("core_sweep")})
    assert pinned == list(range(1, len(os.sched_getaffinity(0)) + 1))


@pytest.mark.slow
def test_csv_has_a_row_per_run(tiny_bench):
    out, _ = tiny_bench
    data = load(out / "results.json")
    rows = (out / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + len(data.runs)
    assert rows[0].startswith("kind,model,work")


def test_a_new_bench_archives_the_previous_results_files_and_nothing_else(tmp_path):
    latest = tmp_path / "latest"
    (latest / "kept").mkdir(parents=True)
    assert archive(latest) is None  # no earlier bench: nothing moves
    (latest / "results.json").write_text(json.dumps({"metadata": {"date": "2026-01-02T03:04:05"}}))
    (latest / "report.md").write_text("# report")
    first = archive(latest)
    assert first == tmp_path / "archive" / "2026-01-02T030405"
    assert sorted(path.name for path in latest.iterdir()) == ["kept"]  # a folder stays
    (latest / "results.json").write_text(json.dumps({"metadata": {"date": "2026-01-02T03:04:05"}}))
    second = archive(latest)
    assert second == tmp_path / "archive" / "2026-01-02T030405-1"
    assert (first / "results.json").exists() and (first / "report.md").exists()
    assert (second / "results.json").exists()


def test_out_names_the_results_folder_and_an_old_style_parent_is_still_understood(tmp_path):
    assert results_folder(tmp_path) == tmp_path
    (tmp_path / "latest").mkdir()
    (tmp_path / "latest" / "results.json").write_text("{}")
    assert results_folder(tmp_path) == tmp_path / "latest"  # --out results, as before


@pytest.mark.slow
def test_bad_bench_options_are_usage_errors():
    for args, message in [
        (("--models", "nosuch"), "unknown model"),
        (("--work", "cpu=fast"), "bad work term"),
        (("--concurrency", "1,x"), "comma-separated"),
        (("--quick", "--full"), "not allowed with"),
    ]:
        done = bench(*args, timeout=30)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)


@pytest.mark.slow
def test_ctrl_c_keeps_finished_runs_and_leaves_no_process(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "loadgen", "bench", "--models", "blocking,threads,processes",
         "--work", "io=1ms", "--concurrency", "1,2,4,8", "--trials", "5", "--duration", "0.3",
         "--warmup", "0.05", "--no-core-sweep", "--out", str(tmp_path)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    results = tmp_path / "results.json"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait for two finished runs on disk
            try:
                if len(json.loads(results.read_text())["runs"]) >= 2:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        tree = psutil.Process(process.pid).children(recursive=True)
        assert len(tree) >= 3  # the three servers and their workers
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the bench's own group
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert process.returncode == 130
    assert "finished runs are in" in err and str(results) in err
    assert len(load(results).runs) >= 2
    assert wait_gone(tree, timeout=5) == []


@pytest.mark.slow
def test_the_bench_draws_every_figure_and_writes_the_report(tiny_bench):
    latest, done = tiny_bench
    for name in ("throughput", "cores", "latency_load", "spectrum", "scaling", "timeline"):
        assert (latest / f"{name}.png").stat().st_size > 10_000, name
        assert (latest / f"{name}.svg").exists(), name
    report = (latest / "report.md").read_text()
    assert "## What this shows" in report and "replies/s" in report
    assert "With io=1ms and 4 clients in flight, the blocking loop answered" in report
    assert "![" in report and "throughput.png" in report and "timeline.png" in report
    assert "In the traced burst of" in report
    assert f"wrote {latest / 'report.md'}" in done.stdout
    page = (latest / "report.html").read_text(encoding="utf-8")
    assert '<section id="lesson">' in page and '<figure id="fig-timeline">' in page
    assert f"wrote {latest / 'report.html'}" in done.stdout


@pytest.mark.slow
def test_plot_and_report_rebuild_from_a_saved_file(tiny_bench, tmp_path):
    out, _ = tiny_bench
    saved = tmp_path / "elsewhere" / "results.json"
    saved.parent.mkdir()
    saved.write_bytes((out / "results.json").read_bytes())
    timeline = saved.parent / "timeline.json"
    timeline.write_bytes((out / "timeline.json").read_bytes())
    for command in ("plot", "report"):
        done = subprocess.run(
            [sys.executable, "-m", "loadgen", command, str(saved)],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    for name in ("cores.png", "timeline.png", "report.md"):
        assert (saved.parent / name).exists(), name
    for name in ("report.md", "report.html"):  # the data alone decides
        assert (saved.parent / name).read_text() == (out / name).read_text(), name


@pytest.mark.slow
def test_plot_refuses_a_file_that_is_not_results(tmp_path):
    bogus = tmp_path / "results.json"
    bogus.write_text('{"schema": 1, "runs": "no"}')
    done = subprocess.run(
        [sys.executable, "-m", "loadgen", "plot", str(bogus)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "not a valid results file" in done.stderr


@pytest.mark.slow
def test_timeline_traces_a_burst_per_model_and_redraws_from_its_file(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "loadgen", "timeline", "--models", "blocking,processes",
         "--work", "cpu=500it", "io=2ms", "--burst", "3", "--repeat", "3", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    saved = json.loads((tmp_path / "timeline.json").read_text())
    assert saved["schema"] == 1 and saved["burst"] == 3
    assert set(saved["traces"]) == {"cpu=500it", "io=2ms"}
    for traces in saved["traces"].values():
        assert set(traces) == {"blocking", "processes"}
        for trace in traces.values():
            requests = trace["requests"]
            assert len(requests) == 3  # one burst only: not the warm-up, not the other two
            assert all(r["received_ns"] >= trace["burst_ns"] for r in requests)
            durations = trace["bursts_ms"]
            assert len(durations) == 3 and all(d > 0 for d in durations)
            took = (max(r["end_ns"] for r in requests) - trace["burst_ns"]) / 1e6
            assert took == pytest.approx(sorted(durations)[1])  # the median burst is the one kept
    blocking = saved["traces"]["io=2ms"]["blocking"]["requests"]
    starts = sorted(r["start_ns"] for r in blocking)
    ends = sorted(r["end_ns"] for r in blocking)
    assert all(s >= e for s, e in zip(starts[1:], ends[:-1], strict=True))  # one at a time
    png = tmp_path / "timeline.png"
    first = png.stat().st_mtime_ns
    png.unlink()
    done = subprocess.run(
        [sys.executable, "-m", "loadgen", "timeline", "--from", str(tmp_path / "timeline.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert png.exists() and png.stat().st_mtime_ns != first


@pytest.mark.slow
def test_demo_runs_without_a_terminal_and_prints_the_final_table():
    done = subprocess.run(
        [sys.executable, "-m", "loadgen", "demo", "--models", "blocking,gevent",
         "--work", "cpu=500it", "io=2ms", "--seconds", "0.5", "--clients", "4"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "cpu=500it: 4 clients" in out and "io=2ms: 4 clients" in out
    assert "Side by side: replies/s, median of the rounds" in out
    assert "blocking        round 3:" in out  # the models took turns, three rounds each
    # CPU work judged against what the machine delivered, model by model
    assert "cpu=500it: the machine delivered" in out and "took turns on one core" in out
    table = out[out.index("Side by side") :]
    assert "blocking" in table and "gevent" in table
    assert "replies/s" in out.split("Side by side")[0]  # plain progress lines came first
    from loadgen.experiments.demo import caption

    assert (
        f"  gevent: {caption(parse_work('io=2ms'), 'gevent', 4)}" in out
    )  # what to look at, per model
    assert "all 4 wait at once" in out and "about 500 replies/s at most" in out


def _interrupt_once_serving(command: list[str]) -> tuple[subprocess.Popen, str, list]:
    """Start a loadgen command, press Ctrl-C once a server of its own is up; return the
    finished process, its stderr and the processes it had started."""
    process = subprocess.Popen(
        [sys.executable, "-m", "loadgen", *command], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        tree: list[psutil.Process] = []
        while time.monotonic() < deadline and not tree:
            tree = psutil.Process(process.pid).children(recursive=True)
            time.sleep(0.05)
        assert tree, "no server started"
        time.sleep(0.5)  # into the traffic
        tree = psutil.Process(process.pid).children(recursive=True)
        os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    return process, err, tree


@pytest.mark.slow
def test_ctrl_c_in_the_timeline_keeps_the_saved_one_and_leaves_no_process(tmp_path):
    saved = tmp_path / "timeline.json"
    saved.write_text('{"an earlier": "timeline"}')
    process, err, tree = _interrupt_once_serving(
        ["timeline", "--models", "threads", "--work", "io=2s", "--burst", "1", "--out",
         str(tmp_path)]
    )  # fmt: skip
    assert process.returncode == 130 and "interrupted" in err and "Traceback" not in err
    assert saved.read_text() == '{"an earlier": "timeline"}'
    assert not list(tmp_path.glob(".trace-*"))
    assert wait_gone(tree, timeout=5) == []


@pytest.mark.slow
def test_ctrl_c_in_the_demo_stops_every_server(tmp_path):
    process, err, tree = _interrupt_once_serving(
        ["demo", "--models", "processes", "--work", "io=5ms", "--seconds", "20"]
    )
    assert process.returncode == 130 and "interrupted" in err and "Traceback" not in err
    assert wait_gone(tree, timeout=5) == []


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_servers_stop_when_the_experiment_driving_them_is_killed(how):
    """Not only Ctrl-C: an experiment ended any way takes its servers (and their workers) down,
    though each runs in a session of its own."""
    driver = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from loadgen.harness.server import start_model\n"
         "server = start_model('processes', workers=2); server.wait_ready()\n"
         "print(server.proc.pid, flush=True); time.sleep(60)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        server = psutil.Process(int(driver.stdout.readline()))
        tree = [server, *server.children(recursive=True)]
        assert len(tree) == 3  # the server and its two workers
        driver.send_signal(how)
        driver.wait(10)
        assert wait_gone(tree, timeout=5.0) == []
    finally:
        driver.kill()
        driver.wait()
        driver.stdout.close()


def _hgrm_rows(text: str) -> list[tuple[float, float]]:
    """(value in ms, percentile) from a .hgrm file's table."""
    rows = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and not line.startswith("#") and fields[0][0].isdigit():
            rows.append((float(fields[0]), float(fields[1])))
    return rows


@pytest.mark.slow
def test_hgrm_writes_each_runs_distribution_as_hdrhistograms_readers_read_it(tiny_bench):
    out, _ = tiny_bench
    data = load(out / "results.json")
    done = subprocess.run(
        [sys.executable, "-m", "loadgen", "hgrm", str(out / "results.json"), "--model",
         "threads", "--out", str(out / "hgrm")],
        cwd=ROOT, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    written = [Path(line) for line in done.stdout.split()]
    runs = [run for run in data.runs if run.model == "threads"]
    open_loop = [run for run in runs if run.loadgen.mode == "open"]
    assert open_loop and len(written) == len(runs) + len(open_loop)  # uncorrected beside
    for run in runs:
        text = (out / "hgrm" / f"{hgrm.name(run)}.hgrm").read_text()
        rows, figures = _hgrm_rows(text), run.loadgen.latency_us
        assert f"TotalCount     = {figures.count:12.3f}" in text
        for percentile, p_us in ((0.5, figures.p50), (0.99, figures.p99)):
            # between a tick clearly below it and the first at or above it (the two round a
            # percentile to a sample in their own ways, which differ by one at small counts)
            below = max(v for v, p in rows if p <= percentile - 0.02)
            above = min(v for v, p in rows if p >= percentile)
            assert below <= p_us / 1000 + 0.0005 and p_us / 1000 <= above + 0.0005
        assert rows[-1][0] == pytest.approx(figures.max / 1000, abs=0.0005)
    done = subprocess.run([sys.executable, "-m", "loadgen", "hgrm", str(out / "results.json"),
                           "--work", "cpu=9ms"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip
    assert done.returncode == 2 and "no run in" in done.stderr
