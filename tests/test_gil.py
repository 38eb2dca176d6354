"""The GIL drawn under the timeline (3.15's sampling profiler): reading its profile, what the
report says of it, and a real sampled burst where a 3.15 can be had."""

from __future__ import annotations

import pytest

from loadgen.analysis.results import GilTrace, Timeline, Trace, TracedRequest
from loadgen.harness.gil import held_intervals, why_not
from loadgen.harness.pythons import provided
from loadgen.views.report import gil_findings

START_MS = 1000.0  # the profile's meta.startTime: CLOCK_MONOTONIC ms
SAMPLE_NS = 100_000  # harness.gil.RATE, 10 kHz


def gecko(threads: dict[int, list[tuple[str, float, float]]]) -> dict:
    names = ["(root)", "Has GIL", "No GIL", "On CPU"]
    return {"meta": {"startTime": START_MS}, "shared": {"stringArray": names},
            "threads": [{"tid": tid, "markers": {
                "name": [names.index(n) for n, _, _ in marks],
                "startTime": [a for _, a, _ in marks], "endTime": [b for _, _, b in marks]}}
                for tid, marks in threads.items()]}  # fmt: skip


def test_the_profile_gives_each_thread_its_gil_intervals_on_the_monotonic_clock():
    held = held_intervals(gecko({7: [("Has GIL", 0.0, 5.0), ("No GIL", 5.0, 9.0),
                                     ("Has GIL", 9.0, 12.5), ("On CPU", 0.0, 12.5)],
                                 8: [("No GIL", 0.0, 5.0), ("Has GIL", 5.0, 9.0)]}))  # fmt: skip
    ms = 1_000_000
    assert held == {7: [[1000 * ms, 1005 * ms], [1009 * ms, 1012.5 * ms]],
                    8: [[1005 * ms, 1009 * ms]]}  # fmt: skip


def gil_trace(held: dict[str, list[list[int]]]) -> GilTrace:
    requests = tuple(TracedRequest(worker=w, received_ns=0, start_ns=0, end_ns=10_000_000,
                                   cpu_ns=10_000_000) for w in held)  # fmt: skip
    return GilTrace(trace=Trace(burst_ns=0, requests=requests), held=held)


def test_one_gil_taken_in_turns_is_never_held_twice_and_own_gils_overlap():
    turns = gil_trace({"thread-0": [[0, 5], [10, 15]], "thread-1": [[5, 10], [15, 20]]})
    assert (turns.overlap_ns(), turns.handovers()) == (0, 3)
    own = gil_trace({"interp-0": [[0, 20]], "interp-1": [[2, 18]]})
    assert (own.overlap_ns(), own.handovers()) == (16, 1)


def test_the_report_says_what_the_gil_did_or_why_it_is_not_drawn():
    turns = gil_trace({"thread-0": [[0, 5_000_000]], "thread-1": [[5_000_000, 10_000_000]]})
    sampled = Timeline(burst=2, traces={}, gil={"cpu=20ms": {"threads": turns}})
    assert "threads: 2 thread(s) held a GIL for 10.0 ms of 20.0 ms of computing, handed over " \
           "1 times, two at once for 0.0 ms" in gil_findings(sampled)[0]  # fmt: skip
    glimpsed = Timeline(burst=2, traces={}, gil={"cpu=20ms": {"subinterpreters": gil_trace(
        {"interp-0": [[0, 1000]], "interp-1": [[0, 1000]]})}})  # fmt: skip
    assert "in instants" in gil_findings(glimpsed)[0]
    missing = Timeline(burst=2, traces={}, gil_missing="drawing the GIL needs Python 3.15")
    assert gil_findings(missing) == ["The GIL is not drawn: drawing the GIL needs Python 3.15."]


def test_only_3_15_and_later_can_be_sampled():
    assert "needs Python 3.15" in why_not([3, 14, 10])
    assert why_not([3, 15, 2]) is None


@pytest.mark.slow
def test_threads_take_the_one_gil_in_turns_under_the_3_15_profiler(tmp_path):
    entry = provided().get("3.15")
    if entry is None or entry.python is None:
        pytest.skip(f"3.15: {entry.missing if entry else 'make pythons has not run here'}")
    from loadgen.experiments.timeline import record
    from loadgen.harness.pythons import probe
    from servers.work import parse

    inside = probe(entry.python)["executable"]
    data = record(["threads"], [parse("cpu=20ms")], 2, tmp_path, repeat=3,
                  python=entry.python, gil_python=inside)  # fmt: skip
    assert data["gil_missing"] is None, data["gil_missing"]
    sampled = Timeline.from_dict({**data, "schema": 1}).gil["cpu=20ms"]["threads"]
    # Each sample reads one thread, then the next: a handover between the two readings shows
    # both holding the GIL for that sample. Beyond that, never two at once.
    assert len(sampled.held) == 2 and sampled.handovers() >= 1  # both held it, in turns
    assert sampled.overlap_ns() <= sampled.handovers() * 2 * SAMPLE_NS
