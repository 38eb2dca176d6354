"""The report's sentences follow the data and the servers' interpreter, never the textbook alone."""

from __future__ import annotations

import pytest
from test_compare import results, trials

from loadgen.analysis.results import parse
from loadgen.views.report import Summary, render, workload_findings

CPU = "cpu=32121it"
FREE_THREADED = {"version": "3.14.0", "implementation": "CPython", "gil_enabled": False,
                 "free_threaded_build": True, "executable": "/opt/python3.14t"}  # fmt: skip


def findings(threads_rate: float, **metadata) -> str:
    runs = trials("blocking", CPU, 16, [400, 410, 405]) + trials(
        "threads", CPU, 16, [threads_rate, threads_rate * 1.01, threads_rate * 0.99]
    )
    summary = Summary(results(runs, **metadata))
    [work] = summary.works()  # cpu=2ms, done as cpu=32121it
    return "\n".join(workload_findings(summary, work))


def test_threads_in_parallel_on_a_free_threaded_build_are_reported_as_expected():
    text = findings(790, server_python=FREE_THREADED)
    assert (
        "threads ran the CPU work in parallel on this free-threaded build (no GIL): 1.95x" in text
    )
    assert "Unlike" not in text


def test_threads_taking_turns_without_a_gil_contradict_the_expectation():
    text = findings(405, server_python=FREE_THREADED)
    assert "Unlike the expectation that threads runs CPU work in parallel on this" in text


@pytest.mark.parametrize("metadata", [{}, {"server_python": {**FREE_THREADED,
                                                              "gil_enabled": True}}])  # fmt: skip
def test_with_a_gil_the_same_speed_up_is_called_unexpected(metadata):
    text = findings(790, **metadata)
    assert "Unlike the expectation that the requests of threads take turns on one core" in text
    assert findings(405, **metadata).count("threads did not speed up the CPU work") == 1


def test_a_server_that_said_the_gil_was_back_on_is_judged_with_the_gil():
    """On a free-threaded build an extension that has not declared support switches the GIL
    back on as it loads: the servers' own word (ready, stopped) outranks --about."""
    from dataclasses import replace

    from loadgen.analysis.results import Ready, RunKind, ServerRecord, Stopped

    runs = trials("blocking", CPU, 16, [400, 410, 405]) + trials("threads", CPU, 16, [405] * 3)
    data = results(runs, server_python=FREE_THREADED)
    assert not data.gil_enabled("threads")  # nothing said from inside: --about counts

    def said(model: str, gil: bool) -> ServerRecord:
        ready = Ready(model=model, host="127.0.0.1", port=1, pid=1, workers=8, work="cpu=1it",
                      gil_enabled=gil)  # fmt: skip
        stopped = Stopped(handled=1, errors={}, per_worker={}, gil_enabled=gil)
        return ServerRecord(kind=RunKind.MATRIX, model=model, work=data.runs[0].work,
                            ready=ready, stopped=stopped)  # fmt: skip

    back_on = replace(data, servers=(said("blocking", False), said("threads", True)))
    assert back_on.gil_enabled("threads") and not back_on.gil_enabled("blocking")
    summary = Summary(back_on)
    text = "\n".join(workload_findings(summary, summary.works()[0]))
    assert "threads did not speed up the CPU work" in text and "Unlike" not in text


# ---- what the report flags: a p99 on too few samples, a run on a busy machine ----------------

QUIET = {"seconds": 0.8, "cpus": 2, "busy_cores": 1.1, "steal_share": 0.0,
         "load_1m_start": 1.2, "load_1m_end": 1.3}  # fmt: skip
# The server used 0.75 cores and the generator 0.3 (trials()): 2.0 busy leaves 0.95 to others.
NEIGHBOUR = {**QUIET, "busy_cores": 2.0, "load_1m_end": 2.9}
STOLEN = {**QUIET, "steal_share": 0.12}


def row(text: str, model: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"| {model} |"))


def test_a_p99_drawn_from_fewer_than_1000_samples_is_flagged():
    # trials() receive 0.8 replies per replies/s: 320-328 samples against 3,200 and more
    runs = trials("blocking", "echo", 16, [400, 410, 405]) + trials(
        "threads", "echo", 16, [4000, 4100, 4050]
    )
    text = render(results(runs), [])
    assert "| 320 samples" not in text and "(320 samples) |" in row(text, "blocking")
    assert "samples" not in row(text, "threads")
    assert "drawn from fewer than 1,000 in at least one trial (the fewest is shown)" in text
    assert ("The p99 of 1 of 2 points was drawn from fewer than 1,000 samples in a trial (as "
            "few as 320), so its slowest 1% is fewer than 10 requests (closed loop with echo: "
            "1 of 2).") in text  # fmt: skip


def test_enough_samples_or_no_count_recorded_flags_no_p99():
    enough = trials("blocking", "echo", 16, [4000, 4100]) + trials("threads", "echo", 16, [2000])
    assert "samples" not in render(results(enough), [])
    plain = results(trials("blocking", "echo", 16, [400]) + trials("threads", "echo", 16, [80]))
    old = plain.to_dict() | {"schema": 1}  # as written before the counts were kept
    for run in old["runs"]:
        del run["machine"], run["loadgen"]["latency_us"]["count"]
    assert "samples" not in render(parse(old), [])


def test_a_run_on_a_busy_machine_is_flagged_and_the_quiet_ones_are_not():
    runs = trials("blocking", "echo", 16, [400, 410, 405], machine=QUIET) + trials(
        "threads", "echo", 16, [800, 810, 805], machine=QUIET
    )
    runs[4]["machine"] = NEIGHBOUR  # threads, trial 2
    text = render(results(runs), [])
    assert ("1 run stayed disturbed and count as they are: threads, echo, 16 clients, round 2, "
            "attempt 1: 0.9 cores used by other processes.") in text  # fmt: skip
    assert "Not measured again (1 of them)" in text  # a first attempt that counts
    assert "(disturbed)" in row(text, "threads") and "(disturbed)" not in row(text, "blocking")
    runs[4]["machine"] = STOLEN
    text = render(results(runs), [])
    assert "round 2, attempt 1: 12% of the CPU time stolen." in text


def test_a_quiet_machine_is_said_to_be_quiet_and_a_file_without_figures_says_nothing():
    runs = trials("blocking", "echo", 16, [400, 410], machine=QUIET)
    text = render(results(runs), [])
    assert "No run was disturbed." in text and "CPU steal reached at most 0.0%" in text
    assert "(disturbed)" not in text
    unmeasured = render(results(trials("blocking", "echo", 16, [400, 410])), [])
    assert "steal reached" not in unmeasured and "(disturbed)" not in unmeasured
    assert "The machine's capacity was not read during this run" in unmeasured


def test_the_report_thresholds_come_from_the_one_table(monkeypatch):
    from loadgen.analysis import expectations

    runs = trials("blocking", "echo", 16, [400, 410], machine=NEIGHBOUR)
    assert "2 runs stayed disturbed and count" in render(results(runs), [])
    looser = expectations.Expectations(other_cores=1.0)
    monkeypatch.setattr(expectations, "EXPECTED", looser)  # the verdict
    monkeypatch.setattr("loadgen.views.report.EXPECTED", looser)  # the sentence
    text = render(results(runs), [])
    assert "No run was disturbed." in text and "others above 1 cores" in text


def test_a_slowed_machine_disturbs_a_run_and_the_attempt_measured_again_is_the_one_counted():
    """Work efficiency: 2 ms of calibrated work at 400 replies/s on 0.75 cores is 1.07; on
    1.6 cores it is 0.5, a machine doing half the work per CPU-second: disturbed. The bench's
    second attempt of that trial counts; the first is listed as measured again."""
    blocking = trials("blocking", CPU, 16, [400, 410, 405], machine=QUIET)
    threads = trials("threads", CPU, 16, [300, 400, 402], machine=QUIET)
    slowed = {**threads[0], "server": {**threads[0]["server"], "cores_used": 1.6}}
    again = {**threads[0], "attempt": 1, "loadgen": {**threads[0]["loadgen"],
                                                       "throughput_rps": 401}}  # fmt: skip
    data = results(blocking + [slowed, again, *threads[1:]])
    [first] = [run for run in data.runs if run.server.cores_used == 1.6]
    assert len(data.runs) == 7 and len(data.counted) == 6 and data.superseded == (first,)
    text = render(data, [])
    assert ("1 disturbed attempt was measured again: threads, cpu=2ms, 16 clients, round 1, "
            "attempt 1: work efficiency 0.37 (5,333 µs of server CPU per reply for 2,000 µs "
            "of calibrated work).") in text  # fmt: skip
    assert "No run was disturbed" not in text and "stayed disturbed" not in text
    assert "| threads | 401 |" in text  # the median of 401, 400, 402: the first attempt is gone
    assert "threads did not speed up the CPU work (0.99x, 3 rounds: 0.98-1.00x" in text


def test_speed_ups_are_judged_against_the_machine_and_two_measurements_that_disagree_are_named():
    probes = [
        {
            "at_s": 1.0,
            "kind": "matrix",
            "work": CPU,
            "trial": t,
            "solo_rate": 16e6,
            "parallel_rate": 24e6,
            "workers": 2,
            "cpu_share": 0.8,
        }
        for t in (None, 0, 1)
    ]
    runs = trials("blocking", CPU, 16, [400, 410, 405]) + trials(
        "processes", CPU, 16, [560, 580, 570]
    )
    sweep = [{**run, "kind": "core_sweep", "trial": 0, "cores_allowed": cores,
              "loadgen": {**run["loadgen"], "throughput_rps": rate}}
             for model, rates in (("blocking", (400, 400)), ("processes", (400, 800)))
             for cores, rate in zip((1, 2), rates, strict=True)
             for run in trials(model, CPU, 16, [1])]  # fmt: skip
    data = parse(results(runs + sweep).to_dict() | {"probes": probes})
    text = render(data, [])
    # 1.5x capacity: processes at 1.41x reached 0.94 of it, in parallel as far as it went
    assert "processes ran the CPU work in parallel: 1.41x the blocking loop (3 rounds: " in text
    assert "0.94 of the 1.50x the machine delivered then" in text
    assert (
        "3 readings of the machine: 2 processes of the servers' pure-Python work did 1.50x" in text
    )
    assert (
        "Two measurements of one quantity disagree for processes: the closed loop gave "
        "1.41x the blocking loop, the core sweep on 2 cores 2.00x"
    ) in text


def test_a_machine_that_delivered_one_core_gets_no_verdict_on_parallel_work_from_it():
    probes = [{"at_s": 1.0, "kind": "matrix", "work": CPU, "trial": t, "solo_rate": 16e6,
               "parallel_rate": 16.8e6, "workers": 2, "cpu_share": 0.5}
              for t in (None, 0, 1)]  # fmt: skip
    runs = (trials("blocking", CPU, 16, [400, 410, 405])
            + trials("processes", CPU, 16, [410, 420, 415])
            + trials("procpool", CPU, 16, [200, 210, 205]))  # fmt: skip
    text = render(parse(results(runs).to_dict() | {"probes": probes}), [])
    assert "The machine itself delivered only 1.05 cores' worth of work" in text
    assert ("processes got what the machine had to give (1.02x the blocking loop, 3 rounds: "
            "1.02-1.02x)") in text  # fmt: skip
    assert "too little to tell parallel work from taking turns" in text
    assert "Unlike the expectation that procpool runs CPU work in parallel" in text
    assert "Unlike the expectation that processes" not in text


def test_a_core_sweep_whose_fewest_cores_answered_nothing_is_reported_not_a_crash():
    runs = [{**run, "kind": "core_sweep", "cores_allowed": cores}
            for cores, rate in ((1, 0), (2, 400))
            for run in trials("threads", CPU, 16, [rate])]  # fmt: skip
    text = render(results(runs), [])
    assert "took threads from 0 to 400 replies/s (no reply on the fewest cores)." in text


def test_the_report_leads_with_at_most_six_sentences_that_carry_the_answer():
    """The committed reference run: its parallel models, its turn-takers, its waits, its pool."""
    from helpers import ROOT

    from loadgen.analysis.results import load
    from loadgen.views.lesson import MOST, lesson
    from servers import MODELS

    data = load(ROOT / "results" / "reference" / "results.json")
    said = lesson(Summary(data))
    assert 3 <= len(said) <= MOST
    cpu, waits, hops = said[:3]
    parallel = [m for m in Summary(data).models() if MODELS[m].parallel == "always"]
    one_core = [m for m in Summary(data).models() if MODELS[m].parallel != "always"
                and not MODELS[m].baseline]  # fmt: skip
    head, _, tail = cpu.partition("computed in parallel")
    assert all(m in head for m in parallel) and all(m in tail for m in one_core)
    assert "took turns on one core" in tail
    every, _, some = waits.partition("overlapped every client's wait")
    caps = [m for m in Summary(data).models() if MODELS[m].workers_meaning == "cap"]
    assert all(f"{m}," in every or f"{m} (" in every for m in caps)
    assert "threads" in some and "about as many as their workers" in some
    assert "procpool 0.39x" in hops
    report = render(data, [])
    assert report.index("## In short") < report.index("## What this shows")
