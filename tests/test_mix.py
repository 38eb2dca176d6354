"""Mixed traffic from the generator (``--mix``): parsing, the deck, and a real run per class."""

from __future__ import annotations

import collections

import pytest
from test_loadgen import assert_accounting, loadgen, run_result

from loadgen.generator import stats
from loadgen.generator.mix import DECK_SIZE, Mix, MixClass, parse_mix
from loadgen.generator.result import LoadResult
from servers.work import Work


def test_a_mix_reads_classes_and_shares_and_keeps_a_workloads_commas():
    mix = parse_mix("echo:90, cpu=1ms,io=5ms:10")
    assert [(c.name, c.share) for c in mix.classes] == [("echo", 0.9), ("cpu=1ms,io=5ms", 0.1)]
    assert mix.spec == "echo:90,cpu=1ms,io=5ms:10"
    assert parse_mix(mix.spec) == mix == Mix.from_json(mix.to_json())
    assert parse_mix("echo:0.95,cpu=20ms:0.05") == parse_mix("echo:95,cpu=20ms:5")


@pytest.mark.parametrize(
    "text, message",
    [
        ("echo:95", "two classes"),
        ("echo:95,cpu=20ms", "has no share"),
        ("echo:95,cpu=fast:5", "bad work term"),
        ("echo:95,echo:5", "twice"),
        ("echo:95,cpu=2ms:0", "positive"),
    ],
)
def test_a_bad_mix_says_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        parse_mix(text)


def test_the_deck_holds_the_exact_shares_shuffled_by_the_seed():
    mix = parse_mix("echo:95,cpu=20ms:4,io=5ms:1")
    deck = mix.deck(seed=1)
    assert len(deck) == DECK_SIZE and collections.Counter(deck) == {0: 950, 1: 40, 2: 10}
    assert deck == mix.deck(seed=1) != mix.deck(seed=2)
    thirds = parse_mix("echo:1,io=1ms:1,io=2ms:1").deck(seed=1)
    assert sorted(collections.Counter(thirds).values()) == [333, 333, 334]


def test_a_class_asks_its_work_in_iterations_once_calibrated():
    mix = parse_mix("echo:95,cpu=20ms:5")
    assert [c.mark for c in mix.classes] == [b"", b"@cpu=20ms "]
    calibrated = mix.calibrated(lambda work: Work(cpu_iterations=123, cpu_seconds=0.02)
                                if work.cpu_seconds else work)  # fmt: skip
    assert calibrated.classes[1] == MixClass(Work(123, 0.02), 0.05)
    assert calibrated.classes[1].mark == b"@cpu=123it " and calibrated.spec == mix.spec


@pytest.mark.slow
def test_a_server_that_reads_no_work_from_requests_is_named_up_front(start_server, tmp_path):
    server = start_server("blocking")  # without --work-from-request
    done = loadgen(tmp_path, "--target", f"127.0.0.1:{server.ready['port']}",
                   "--mix", "echo:95,cpu=2ms:5", check=False)  # fmt: skip
    assert done.returncode == 2 and "--work-from-request" in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["closed", "open"])
def test_each_class_is_counted_and_timed_on_its_own(start_server, tmp_path, mode):
    server = start_server("blocking", "--work-from-request")
    rate = ("--mode", "open", "--rate", "200") if mode == "open" else ()
    result = run_result(
        tmp_path, "--target", f"127.0.0.1:{server.ready['port']}", "--warmup", "0",
        "--duration", "1", "--concurrency", "4", "--procs", "2", "--timeout", "0.5",
        "--mix", "echo:80,io=20ms:20", *rate,
    )  # fmt: skip
    stopped = server.stop()
    assert_accounting(result)
    echo, waits = LoadResult.from_dict(result).classes
    assert (echo.name, waits.name, waits.share) == ("echo", "io=20ms", 0.2)
    for key in ("sent", "received", "lost"):
        assert getattr(echo, key) + getattr(waits, key) == result[key], key
    assert waits.sent == pytest.approx(result["sent"] * 0.2, abs=8)  # two decks, dealt in turn
    for kind in (echo, waits):
        assert stats.decode(kind.histogram).get_total_count() == kind.received
    assert waits.latency_us.p50 >= 20_000  # the server waited as each request asked
    assert echo.latency_us.p50 < waits.latency_us.p50
    assert stopped["handled"] == result["sent"] + 2  # and the two probes
    assert LoadResult.from_dict(result).to_dict() == result


def test_dealt_by_client_each_class_gets_whole_clients_and_a_small_one_at_least_one():
    mix = parse_mix("echo:95,cpu=20ms:5")
    dealt = mix.clients(seed=1, clients=16)
    assert collections.Counter(dealt) == {0: 15, 1: 1} and dealt == mix.clients(1, 16)
    assert collections.Counter(parse_mix("echo:1,io=1ms:1").clients(3, 10)) == {0: 5, 1: 5}


@pytest.mark.slow
def test_dealt_by_client_each_client_keeps_its_class_and_its_figures(start_server, tmp_path):
    server = start_server("blocking", "--work-from-request")
    result = run_result(
        tmp_path, "--target", f"127.0.0.1:{server.ready['port']}", "--warmup", "0",
        "--duration", "1", "--concurrency", "6", "--procs", "2", "--mode", "open",
        "--rate", "300", "--mix", "echo:2,io=5ms:1", "--deal", "client",
    )  # fmt: skip
    server.stop()
    typed = LoadResult.from_dict(result)
    assert [c.client for c in typed.clients] == list(range(6)) and typed.deal == "client"
    assert sorted(c.kind for c in typed.clients) == [0, 0, 0, 0, 1, 1]
    assert len({c.port for c in typed.clients}) == 6
    for i, kind in enumerate(typed.classes):  # the classes' figures are their clients' sums
        mine = [c for c in typed.clients if c.kind == i]
        assert kind.sent == sum(c.sent for c in mine) and kind.sent > 0
        assert kind.received == sum(c.received for c in mine)
    waits = [c for c in typed.clients if c.kind == 1]
    assert all(c.latency_us.p50 >= 5_000 for c in waits)
