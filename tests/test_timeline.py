"""The timeline's arithmetic: a request's pieces and the cores-busy strip, on made-up traces."""

from __future__ import annotations

import pytest

from loadgen.analysis.results import Timeline, Trace, TracedRequest
from loadgen.views.timeline import column_title, cores_busy, pieces

MS = 1_000_000
TURN = Timeline(burst=2, traces={}, gil_switch_interval_s=0.005)


def request(start_ms: float, end_ms: float, checkpoints=(), cpu_ms: float = 0.0) -> TracedRequest:
    marks = [[int(t * MS), int(c * MS)] for t, c in checkpoints]
    cpu_ns = marks[-1][1] if marks else int(cpu_ms * MS)
    return TracedRequest(worker="w", received_ns=int(start_ms * MS), start_ns=int(start_ms * MS),
                         end_ns=int(end_ms * MS), cpu_ns=cpu_ns, checkpoints=marks)  # fmt: skip


def busy_at(requests: list[TracedRequest], ms: float, cores: int = 2) -> float:
    times, busy = cores_busy(requests, 0, cores)
    return [level for t, level in zip(times, busy, strict=True) if t <= ms][-1]


def test_checkpoints_tell_running_from_waiting_within_a_request():
    # computed 0-2 ms, waited for the GIL 2-4 ms, computed again 4-6 ms
    r = request(0, 6, [(0, 0), (2, 2), (4, 2), (6, 4)])
    assert pieces(r) == [(0, 2 * MS, 1.0), (2 * MS, 4 * MS, 0.0), (4 * MS, 6 * MS, 1.0)]


def test_without_checkpoints_a_request_is_one_piece_at_its_average_share():
    assert pieces(request(0, 4, cpu_ms=1)) == [(0, 4 * MS, 0.25)]
    assert pieces(request(0, 5)) == [(0, 5 * MS, 0.0)]  # a wait: no CPU


def test_time_outside_the_checkpoints_is_counted_as_idle():
    r = request(0, 8, [(1, 0), (3, 2)])  # decoded until 1 ms, then a wait after 3 ms
    assert pieces(r) == [(0, MS, 0.0), (MS, 3 * MS, 1.0), (3 * MS, 8 * MS, 0.0)]


def test_threads_taking_turns_keep_the_strip_at_one_core():
    a = request(0, 6, [(0, 0), (2, 2), (4, 2), (6, 4)])
    b = request(2, 8, [(2, 0), (4, 2), (6, 2), (8, 4)])
    for ms in (1, 3, 5, 7):
        assert busy_at([a, b], ms) == pytest.approx(1.0)
    assert busy_at([a, b], 9) == 0.0


def test_parallel_requests_add_up_and_the_strip_is_capped_at_the_cores():
    full = [request(0, 4, [(0, 0), (4, 4)]) for _ in range(3)]
    assert busy_at(full[:2], 2) == pytest.approx(2.0)
    assert busy_at(full, 2, cores=2) == pytest.approx(2.0)
    assert busy_at(full, 2, cores=4) == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("cpu=2ms", "shorter than a turn"), ("cpu=20ms", "longer than a turn"),
     ("io=5ms", "waiting, no computing"), ("block=5ms", "a call that never yields"),
     ("echo", "a burst of 2 requests")],
)  # fmt: skip
def test_column_titles_compare_the_work_with_a_gil_turn(spec, expected):
    title = column_title(spec, TURN, None)
    assert title.startswith(spec) and expected in title


def test_report_states_the_average_cores_busy_over_each_burst():
    from loadgen.views.report import timeline_findings

    side_by_side = [request(0, 4, [(0, 0), (4, 4)]) for _ in range(2)]
    in_turns = [request(0, 6, [(0, 0), (2, 2), (4, 2), (6, 4)]),
                request(2, 8, [(2, 0), (4, 2), (6, 2), (8, 4)])]  # fmt: skip
    traces = {"processes": Trace(burst_ns=0, requests=tuple(side_by_side)),
              "threads": Trace(burst_ns=0, requests=tuple(in_turns))}  # fmt: skip
    [line] = timeline_findings(Timeline(burst=2, cores=2, traces={"cpu=4ms": traces}))
    assert "threads done in 8.0 ms, 1.0 cores busy on average, 67% of a core" in line
    assert "processes done in 4.0 ms, 2.0 cores busy on average, 100% of a core" in line


@pytest.mark.parametrize(
    ("content", "message"),
    [("not json", "not JSON"), ('{"runs": []}', "no traces"),
     ('{"burst": 2, "traces": {"cpu=2ms": {"blocking": {"requests": [{"x": 1}]}}}}',
      "this version can read")],
)  # fmt: skip
def test_redrawing_a_file_that_is_not_a_timeline_says_so(tmp_path, content, message):
    from loadgen.views.timeline import redraw

    saved = tmp_path / "timeline.json"
    saved.write_text(content)
    with pytest.raises(ValueError, match=message):
        redraw(saved)
    assert not (tmp_path / "timeline.png").exists()


def test_lanes_read_the_task_of_new_traces_and_the_greenlet_of_old_ones():
    times = {"received_ns": 0, "start_ns": 0, "end_ns": 1, "cpu_ns": 0}
    assert TracedRequest.from_dict({"worker": "hub", "task": 7, **times}).lane == 7
    old = TracedRequest.from_dict({"worker": "hub", "greenlet": 5, **times})  # before 'task'
    assert old.lane == 5
    assert TracedRequest.from_dict({"worker": "0", "task": None, **times}).lane is None


def test_column_titles_drop_the_gil_turn_on_a_free_threaded_build():
    from test_compare import results

    metadata = results([], server_python={"gil_enabled": False}).metadata
    title = column_title("cpu=20ms", TURN, metadata)
    assert "no GIL on this build" in title and "turn on the GIL" not in title


def test_each_request_bar_names_its_times_on_hover():
    import matplotlib.pyplot as plt

    from loadgen.views import svg
    from loadgen.views.timeline import draw

    in_turns = [request(0, 6, [(0, 0), (2, 2), (4, 2), (6, 4)]),
                request(2, 8, [(2, 0), (4, 2), (6, 2), (8, 4)])]  # fmt: skip
    side_by_side = [request(0, 4, [(0, 0), (4, 4)]) for _ in range(2)]
    traces = {"threads": Trace(burst_ns=0, requests=tuple(in_turns)),
              "processes": Trace(burst_ns=0, requests=tuple(side_by_side))}  # fmt: skip
    figure = draw(Timeline(burst=2, cores=2, traces={"cpu=4ms": traces}))
    drawn = svg.inline(figure, "t")
    plt.close(figure)
    assert "<title>threads, worker w: received at 2.0 ms, served 2.0-8.0 ms, 67% of a core" in drawn
    assert drawn.count("<title>") == 4  # a title per request, none besides
