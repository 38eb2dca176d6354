"""The mixed-traffic experiment: its plan, its file, its findings, and one small real run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import ROOT

from loadgen.analysis.mixed import MixedResults, expected
from loadgen.experiments.mixed import DEFAULT_INTERVAL_MS, MixedSettings, plan
from loadgen.generator.mix import parse_mix
from loadgen.views.mixed import client_findings, findings
from servers import MODELS

MIX = parse_mix("echo:95,cpu=20ms:5")


def test_expectations_come_from_the_registry_traits():
    for name, model in MODELS.items():
        want = {"always": "idle", "without_gil": "switch", "never": "whole"}[model.parallel]
        assert expected(name) == ("hash" if model.reuse_port else want)


def test_the_plan_alternates_the_order_and_sweeps_only_threads_on_one_gil():
    models = [name for name in MODELS if MODELS[name].parallel != "without_gil"]
    swept = [name for name in MODELS if MODELS[name].parallel == "without_gil"]
    settings = MixedSettings(rounds=2, switch_intervals=(1.0, 5.0))
    runs = plan([*models, *swept], settings)
    first = [model for round_number, model, phase, _ in runs if round_number == 1]
    second = [model for round_number, model, phase, _ in runs if round_number == 2]
    assert first[0] == models[0] and second[0] == swept[-1]  # reversed every other round
    sweeps = {(model, ms) for _, model, _, ms in runs if ms != DEFAULT_INTERVAL_MS}
    assert sweeps == {(model, 1.0) for model in swept}
    readers = [name for name in (*models, *swept)
               if MODELS[name].forks and not MODELS[name].hands_off]  # fmt: skip
    assert [model for _, model, phase, _ in runs if phase == "by_client"] == [
        *readers, *readers[::-1]]  # fmt: skip
    assert sum(phase == "alone" for _, _, phase, _ in runs) == 2 * (len(models) + len(swept))


def _class(name: str, p50: float, p99: float) -> dict:
    latency = dict.fromkeys(("min", "mean", "p90", "p999", "max"), p99) | {
        "p50": p50, "p99": p99, "count": 100}  # fmt: skip
    work = name if name == "echo" else "cpu=200000it"
    return {"name": name, "work": work, "share": 0.5, "sent": 100, "received": 100, "lost": 0,
            "latency_us": latency, "histogram": ""}  # fmt: skip


def _results(rows: list[tuple[str, str, float, float, float | None]]) -> MixedResults:
    """(model, phase, interval, fast p99, slow p50) -> a results file's data."""
    runs = [{"model": model, "round": 1, "phase": phase, "switch_interval_ms": interval,
             "sent": 200, "received": 200, "lost": 0, "per_worker": {},
             "classes": [_class("echo", 100, fast)] + ([_class("cpu=20ms", slow, slow)]
                                                         if slow else [])}
            for model, phase, interval, fast, slow in rows]  # fmt: skip
    return MixedResults.from_dict({
        "mix": MIX.spec, "rate": 200, "clients": 16, "workers": 8, "seconds": 5, "rounds": 1,
        "server_python": "3.13.0", "default_switch_interval_ms": 5.0, "calibration": {},
        "skipped": {}, "runs": runs,
    })  # fmt: skip


def test_findings_say_whether_each_model_fits_what_its_traits_say():
    one_thread = next(n for n, m in MODELS.items() if m.parallel == "never")
    threads = next(n for n, m in MODELS.items() if m.parallel == "without_gil")
    parallel = next(n for n, m in MODELS.items() if m.parallel == "always")
    data = _results([
        (one_thread, "alone", 5.0, 300, None), (one_thread, "mixed", 5.0, 20_000, 21_000),
        (threads, "alone", 5.0, 300, None), (threads, "mixed", 5.0, 9_000, 40_000),
        (threads, "mixed", 1.0, 3_000, 60_000),
        (parallel, "alone", 5.0, 300, None), (parallel, "mixed", 5.0, 19_000, 21_000),
    ])  # fmt: skip
    said = findings(data)
    assert said[0].startswith(f"{one_thread}: ") and said[0].endswith("It fits.")
    assert said[1].startswith(f"{threads}: ") and said[1].endswith("It fits.")
    assert said[2].startswith(f"{parallel}: ") and said[2].endswith("It does NOT fit.")
    assert "At 1 ms it is 3.0x lower than at 5 ms" in said[3]
    assert "its p50 was 40 ms at 5 ms and 60 ms at 1 ms" in said[3]


@pytest.mark.slow
def test_a_small_run_writes_its_file_its_figure_and_its_findings(tmp_path):
    threads = next(n for n, m in MODELS.items() if m.parallel == "without_gil")
    done = subprocess.run(
        [sys.executable, "-m", "loadgen", "mixed", "--models", threads, "--seconds", "0.5",
         "--warmup", "0.2", "--rounds", "1", "--switch-intervals", "1,5", "--rate", "100",
         "--mix", "echo:90,cpu=2ms:10", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = MixedResults.from_dict(json.loads((tmp_path / "mixed.json").read_text()))
    assert [(r.model, r.phase, r.switch_interval_ms) for r in data.runs] == [
        (threads, "alone", 5.0),
        (threads, "mixed", 5.0),
        (threads, "mixed", 1.0),
    ]
    for run in data.runs:
        assert run.lost == 0 and run.received == run.sent > 0
        assert sum(kind.sent for kind in run.classes) == run.sent
        assert [kind.name for kind in run.classes] == (
            ["echo"] if run.phase == "alone" else ["echo", "cpu=2ms"]
        )
    assert data.calibration["cpu=2ms"] > 0
    assert (tmp_path / "mixed.png").stat().st_size > 10_000
    assert f"- {threads}: a fast request's p99 was" in done.stdout
    assert f"- {threads}, the switch interval swept" in done.stdout


def _client(client: int, port: int, kind: int, p99: int) -> dict:
    from loadgen.generator import stats as hdr

    histogram = hdr.new_histogram()
    histogram.record_value(p99, 10)
    latency = dict.fromkeys(("min", "mean", "p50", "p90", "p99", "p999", "max"), p99)
    return {"client": client, "port": port, "kind": kind, "sent": 10, "received": 10, "lost": 0,
            "latency_us": latency | {"count": 10}, "histogram": hdr.encode(histogram)}  # fmt: skip


def test_dealt_by_client_the_fast_clients_are_split_by_the_slow_clients_worker():
    kept = next(n for n, m in MODELS.items() if m.reuse_port)
    spread = next(n for n, m in MODELS.items() if m.forks and not m.reuse_port)
    data = _results([(kept, "alone", 5.0, 300, None), (spread, "alone", 5.0, 300, None)])
    clients = [_client(0, 1000, 1, 20_000), _client(1, 1001, 0, 19_000),
               _client(2, 1002, 0, 400), _client(3, 1003, 0, 500)]  # fmt: skip
    by_worker = {"1000": ["w0"], "1001": ["w0"], "1002": ["w1"], "1003": ["w1"]}
    by_idle = by_worker | {"1002": ["w0", "w1"]}  # a client answered by two workers
    slow_class = [_class("echo", 400, 19_000), _class("cpu=20ms", 20_000, 20_000)]
    runs = [{"model": kept, "round": 1, "phase": "by_client", "switch_interval_ms": 5.0,
             "sent": 40, "received": 40, "lost": 0, "per_worker": {}, "classes": slow_class,
             "clients": clients, "workers_of_port": by_worker},
            {"model": spread, "round": 1, "phase": "by_client", "switch_interval_ms": 5.0,
             "sent": 40, "received": 40, "lost": 0, "per_worker": {}, "classes": slow_class,
             "clients": clients, "workers_of_port": by_idle}]  # fmt: skip
    data = MixedResults.from_dict(data.to_dict() | {"runs": [*data.to_dict()["runs"], *runs]})
    run = data.runs[2]
    shared, apart = run.fast_beside_slow()
    assert run.kept_to_one() and [c.client for c in shared] == [1]
    assert [c.client for c in apart] == [2, 3] and not data.runs[3].kept_to_one()
    said = client_findings(data)
    assert said[0] == (f"{kept}, a slow client among fast ones: each client kept to one worker; "
                       "the fast clients on the slow client's worker (1 of 3) had a p99 of "
                       "19 ms, the others 0.5 ms, against 20 ms for a slow request; it fits a "
                       "kernel that picks the worker by address.")  # fmt: skip
    assert said[1].startswith(f"{spread}, a slow client among fast ones: clients were not kept")


def test_a_slow_client_alone_on_its_worker_is_said_so_not_timed_at_zero():
    kept = next(n for n, m in MODELS.items() if m.reuse_port)
    base = _results([(kept, "alone", 5.0, 300, None)]).to_dict()
    clients = [_client(0, 1000, 1, 20_000), _client(1, 1001, 0, 400), _client(2, 1002, 0, 500)]
    alone = {"1000": ["w0"], "1001": ["w1"], "1002": ["w1"]}
    run = {"model": kept, "round": 1, "phase": "by_client", "switch_interval_ms": 5.0,
           "sent": 30, "received": 30, "lost": 0, "per_worker": {}, "clients": clients,
           "classes": [_class("echo", 400, 500), _class("cpu=20ms", 20_000, 20_000)],
           "workers_of_port": alone}  # fmt: skip
    [said] = client_findings(MixedResults.from_dict(base | {"runs": [*base["runs"], run]}))
    assert "(0 of 2) were none, in every round, the others 0.5 ms" in said
    assert said.endswith("it fits a kernel that picks the worker by address.")
