"""A model's bound comes from what the registry says it is, for every model in it."""

from __future__ import annotations

import pytest

from loadgen.analysis.bounds import bound, in_progress
from servers import MODELS, baseline
from servers.work import parse

WAIT = 0.005


@pytest.mark.parametrize("model", list(MODELS))
def test_every_model_has_a_bound_for_each_kind_of_work_and_none_for_echo(model):
    assert bound(model, parse("echo"), 32, 8, 2) is None
    for work in ("io=5ms", "block=5ms", "cpu=2ms"):
        assert bound(model, parse(work), 16, 8, 2) > 0
    assert bound(model, parse("cpu=20000it"), 8, 8, 2, cpu_seconds=0.002) == bound(
        model, parse("cpu=2ms"), 8, 8, 2
    )
    assert bound(model, parse("cpu=1ms,io=5ms"), 8, 8, 2) is None  # mixed: no simple bound


@pytest.mark.parametrize("model", list(MODELS))
def test_a_wait_is_bounded_by_what_the_model_holds_at_once(model):
    known = MODELS[model]
    for clients in (1, 16, 64):
        holding = in_progress(model, clients, 8)
        assert 1 <= holding <= clients
        expected = holding / WAIT if "io" in known.overlaps else 1 / WAIT
        assert bound(model, parse("io=5ms"), clients, 8, 2) == pytest.approx(expected)
    if known.workers_meaning == "workers":
        assert in_progress(model, 64, 8) == 8  # eight workers wait at most eight requests
    if known.workers_meaning == "cap":
        assert in_progress(model, 64, 8) == 64  # a task each: --workers is not their limit
    if "block" not in known.overlaps:
        assert bound(model, parse("block=5ms"), 64, 8, 2) == pytest.approx(1 / WAIT)


@pytest.mark.parametrize("gil", [True, False], ids=["gil", "free-threaded"])
@pytest.mark.parametrize("model", list(MODELS))
def test_cpu_work_is_bounded_by_the_cores_the_model_computes_on(model, gil):
    cores = 2 if MODELS[model].computes_in_parallel(gil) else 1
    assert bound(model, parse("cpu=2ms"), 8, 8, 2, gil) == pytest.approx(cores / 0.002)


def test_the_baseline_is_one_at_a_time_whatever_the_clients():
    name = baseline().name
    assert [bound(name, parse("io=5ms"), c, 8, 2) for c in (1, 16, 64)] == pytest.approx([200] * 3)
