"""The report's sentences follow the data and the servers' interpreter, never the textbook alone."""

from __future__ import annotations

import pytest
from test_compare import results, trials

from loadgen.views.report import Summary, workload_findings

CPU = "cpu=32121it"
FREE_THREADED = {"version": "3.14.0", "implementation": "CPython", "gil_enabled": False,
                 "free_threaded_build": True, "executable": "/opt/python3.14t"}  # fmt: skip


def findings(threads_rate: float, **metadata) -> str:
    runs = trials("blocking", CPU, 16, [400, 410, 405]) + trials(
        "threads", CPU, 16, [threads_rate, threads_rate * 1.01, threads_rate * 0.99]
    )
    data = results(runs, **metadata)
    return "\n".join(workload_findings(Summary(data), CPU))


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
