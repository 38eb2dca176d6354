"""The load generator: exact accounting against misbehaving servers, open-loop honesty, merging."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT

from loadgen.generator import engine, runner, stats, wire
from loadgen.generator.result import LoadResult
from servers import MODELS


class Fake:
    """tests/fakes.py as a subprocess: a misbehaving echo server that counts what it did."""

    def __init__(self, mode: str, *args: str):
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "fakes.py"), mode, *args],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        ready = json.loads(self.proc.stdout.readline())
        self.target = f"{ready['host']}:{ready['port']}"

    def stop(self) -> dict:
        self.proc.send_signal(signal.SIGTERM)
        counts = json.loads(self.proc.stdout.readline())
        self.proc.wait(10)
        self.proc.stdout.close()
        return counts


@pytest.fixture
def fake():
    started: list[Fake] = []

    def start(mode: str, *args: str) -> Fake:
        started.append(Fake(mode, *args))
        return started[-1]

    yield start
    for each in started:
        if each.proc.poll() is None:
            each.proc.kill()
            each.proc.wait(5)
            each.proc.stdout.close()


def loadgen(tmp_path: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, "-m", "loadgen", "run", "--json", str(out), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    if check:
        assert done.returncode == 0, done.stderr
        done.result = json.loads(out.read_text())  # type: ignore[attr-defined]
    return done


def run_result(tmp_path: Path, *args: str) -> dict:
    return loadgen(tmp_path, *args).result  # type: ignore[attr-defined]


def assert_accounting(result: dict) -> None:
    assert result["sent"] == result["received"] + result["lost"] + result["in_flight"]
    assert result["accounting_ok"] is True


QUICK = ("--warmup", "0", "--duration", "1", "--timeout", "0.2", "--concurrency", "4")


@pytest.mark.slow
def test_drops_are_counted_as_losses_exactly(fake, tmp_path):
    server = fake("drop", "--every", "7")
    result = run_result(tmp_path, "--target", server.target, *QUICK)
    counts = server.stop()
    assert counts["misbehaved"] > 0
    assert result["sent"] == counts["received"]
    assert result["lost"] == counts["misbehaved"]
    assert result["received"] == counts["received"] - counts["misbehaved"]
    assert result["in_flight"] == 0
    assert result["latency_us"]["count"] == result["received"]
    assert_accounting(result)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "field", "loses"),
    [
        ("duplicate", "duplicate", False),  # a second copy of a reply: its request answered
        ("corrupt", "corrupt", True),  # not the request's text: the request is lost
        ("error", "server_errors", True),  # refused: never answered
    ],
)
def test_each_kind_of_bad_reply_is_counted_apart_and_never_taken_as_a_sample(
    fake, tmp_path, mode, field, loses
):
    server = fake(mode, "--every", "5")
    result = run_result(tmp_path, "--target", server.target, *QUICK)
    counts = server.stop()
    assert result[field] == counts["misbehaved"] > 0
    assert result["lost"] == (counts["misbehaved"] if loses else 0)
    assert result["latency_us"]["count"] == result["received"]
    assert_accounting(result)


@pytest.mark.slow
def test_an_empty_datagram_after_each_reply_is_counted_and_never_taken_for_one(fake, tmp_path):
    # Every reply is followed by an empty datagram, so some arrive after a client's last
    # reply, while nothing is in flight: once taken for "the expected reply", and a crash.
    server = fake("empty", "--every", "1")
    result = run_result(tmp_path, "--target", server.target, *QUICK)
    counts = server.stop()
    assert result["received"] == result["sent"] == counts["received"] and result["lost"] == 0
    assert 0 < result["corrupt"] <= counts["misbehaved"]
    assert_accounting(result)


@pytest.mark.slow
def test_late_replies_are_counted_not_sampled(fake, tmp_path):
    server = fake("stall", "--stall-after", "50")  # 200 ms pause, timeout 50 ms
    result = run_result(
        tmp_path, "--target", server.target, "--warmup", "0", "--duration", "1",
        "--timeout", "0.05", "--concurrency", "4",
    )  # fmt: skip
    server.stop()
    assert result["late"] >= 1 and result["lost"] >= result["late"]
    assert result["latency_us"]["max"] < 50_000  # a late reply is never a latency sample
    assert_accounting(result)


@pytest.mark.slow
def test_a_server_stall_shows_in_both_latencies(fake, tmp_path):
    server = fake("stall", "--stall-after", "300")
    result = run_result(
        tmp_path, "--target", server.target, "--mode", "open", "--rate", "500",
        "--warmup", "0", "--duration", "1.5", "--concurrency", "4",
    )  # fmt: skip
    server.stop()
    assert result["latency_us"]["max"] >= 150_000
    assert result["latency_uncorrected_us"]["max"] >= 150_000
    assert result["lost"] == 0
    assert_accounting(result)


@pytest.mark.slow
def test_a_generator_stall_shows_in_corrected_latency_only(start_server, tmp_path):
    """Freeze the generator 200 ms (SIGSTOP, as a descheduled process would be): requests
    scheduled meanwhile carry the stall from their scheduled time, not from their late send."""
    server = start_server("blocking")
    out = tmp_path / "stall.json"
    command = [
        sys.executable, "-m", "loadgen", "run", "--target", f"127.0.0.1:{server.ready['port']}",
        "--mode", "open", "--rate", "1000", "--warmup", "0", "--duration", "3",
        "--concurrency", "4", "--json", str(out),
    ]  # fmt: skip
    generator = subprocess.Popen(
        command, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        for line in generator.stderr:  # plain progress lines: wait until it is measuring
            if "measuring" in line:
                break
        os.killpg(generator.pid, signal.SIGSTOP)
        time.sleep(0.2)  # the stall itself
        os.killpg(generator.pid, signal.SIGCONT)
        generator.stderr.read()
        assert generator.wait(30) == 0
    finally:
        if generator.poll() is None:
            os.killpg(generator.pid, signal.SIGKILL)
        generator.stderr.close()
    result = json.loads(out.read_text())
    corrected, uncorrected = result["latency_us"], result["latency_uncorrected_us"]
    assert corrected["max"] >= 150_000
    assert corrected["p99"] >= 50_000  # ~200 of ~3000 requests were scheduled in the stall
    assert uncorrected["p99"] < 50_000
    assert result["generator"]["behind"] is True
    assert result["generator"]["lag_us"]["max"] >= 150_000
    assert_accounting(result)


@pytest.mark.slow
def test_open_loop_keeps_its_rate(start_server, tmp_path):
    server = start_server("blocking")
    result = run_result(
        tmp_path, "--target", f"127.0.0.1:{server.ready['port']}", "--mode", "open",
        "--rate", "2000", "--warmup", "0.3", "--duration", "2", "--concurrency", "8",
    )  # fmt: skip
    assert result["generator"]["achieved_send_rps"] == pytest.approx(2000, rel=0.05)
    assert result["throughput_rps"] == pytest.approx(2000, rel=0.05)
    assert result["lost"] == 0
    assert_accounting(result)


@pytest.mark.slow
def test_two_processes_merge_to_the_same_totals_as_one(fake, tmp_path):
    server = fake("drop", "--every", "10")
    common = ("--target", server.target, "--mode", "open", "--rate", "1000", "--warmup", "0",
              "--duration", "1", "--timeout", "0.2", "--concurrency", "8")  # fmt: skip
    one = run_result(tmp_path, *common, "--procs", "1")
    two = run_result(tmp_path, *common, "--procs", "2")
    server.stop()
    for key in ("sent", "received", "lost", "in_flight", "duplicate", "corrupt"):
        assert one[key] == two[key], key
    assert one["sent"] == 1000 and one["lost"] == 8 * (125 // 10)
    assert stats.decode(two["histogram"]).get_total_count() == two["received"]
    assert sum(row["replies"] for row in two["series"]) == two["received"]
    assert_accounting(two)


@pytest.mark.slow
@pytest.mark.parametrize("model", list(MODELS), ids=list(MODELS))
def test_every_model_answers_a_light_closed_loop_without_loss(start_server, tmp_path, model):
    server = start_server(model)
    result = run_result(
        tmp_path, "--target", f"127.0.0.1:{server.ready['port']}", "--warmup", "0",
        "--duration", "0.5", "--concurrency", "4",
    )  # fmt: skip
    stopped = server.stop()
    assert result["lost"] == 0 and result["received"] > 0
    assert result["corrupt"] == result["duplicate"] == result["server_errors"] == 0
    assert stopped["handled"] == result["sent"] + 1  # and the probe
    assert_accounting(result)


@pytest.mark.slow
def test_result_has_the_documented_keys_and_gbk_works(start_server, tmp_path):
    server = start_server("threads")
    result = run_result(
        tmp_path, "--target", f"127.0.0.1:{server.ready['port']}", "--warmup", "0.1",
        "--duration", "1", "--encoding", "gbk", "--payload-size", "100",
    )  # fmt: skip
    typed = LoadResult.from_dict(result)  # the one definition, the generator's and the files'
    assert typed.extra == {} and typed.to_dict() == result
    assert result.keys() == {field.name for field in dataclasses.fields(LoadResult)} - {"extra"}
    assert typed.received > 0 and typed.corrupt == 0 and typed.encoding == "gbk"
    assert typed.series and typed.series[0].replies > 0 and typed.latency_us.p50


PART_KEYS = {
    "part", "clients", "elapsed_s", "warmup_s", "cpu_s", "counts", "latency", "uncorrected",
    "lag", "series", "classes", "per_client",
}  # fmt: skip
COUNT_KEYS = {
    "sent", "received", "lost", "late", "duplicate", "corrupt", "server_errors", "socket_errors",
    "in_window", "in_flight",
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["closed", "open"])
def test_one_part_calls_on_window_around_the_window_and_reports_its_totals(start_server, mode):
    """engine.run_part as runner.run and run_here use it: on_window("start") then ("end"), once
    each and a duration apart; its last totals in its row of the progress array."""
    server = start_server("blocking")
    settings = engine.Settings(
        "127.0.0.1", server.ready["port"], mode=mode, concurrency=4, rate=400, warmup=0.2,
        duration=0.6, timeout=0.2, procs=2,
    )  # fmt: skip
    edges: list[tuple[str, float]] = []
    progress = [-1] * (2 * len(engine.PROGRESS_FIELDS))
    part = engine.run_part(
        settings, 1, time.monotonic_ns() + 2_000_000, progress,
        on_window=lambda edge: edges.append((edge, time.monotonic())),
    )  # fmt: skip
    assert [edge for edge, _ in edges] == ["start", "end"]
    assert edges[1][1] - edges[0][1] == pytest.approx(0.6, abs=0.05)
    assert part["elapsed_s"] == pytest.approx(0.6, abs=0.05)
    assert part.keys() == PART_KEYS and part["counts"].keys() == COUNT_KEYS
    counts = part["counts"]
    assert part["part"] == 1 and part["clients"] == 2 and counts["received"] > 0
    assert counts["sent"] == counts["received"] + counts["lost"] + counts["in_flight"]
    assert progress == [-1] * 4 + [counts["sent"], counts["received"], counts["lost"], 1]
    assert sum(second["replies"] for second in part["series"]) == counts["received"]
    assert bool(part["lag"]) is bool(part["uncorrected"]) is (mode == "open")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        (["--target", f"127.0.0.1:{free_udp_port()}"], "nothing listens"),
        (["--target", "no-such-host.invalid:9"], "cannot resolve"),
        (["--target", "127.0.0.1:9", "--mode", "open", "--rate", "0"], "must be positive"),
        (["--target", "127.0.0.1:9", "--mode", "open"], "needs --rate"),
        (["--target", "127.0.0.1:9", "--payload-size", "1025"], "above the server's"),
        (["--target", "127.0.0.1"], "HOST:PORT"),
        (["--target", "127.0.0.1:9", "--mix", "echo:95"], "two classes"),
        (["--target", "127.0.0.1:9", "--deal", "client"], "give a --mix"),
        (
            ["--target", "127.0.0.1:9", "--mix", "echo:9,cpu=2ms:1", "--protocol", "sockperf"],
            "--protocol echo only",
        ),
        (
            ["--target", "127.0.0.1:9", "--mix", "echo:9,cpu=2ms:1", "--payload-size", "1020"],
            "above the server's",
        ),
    ],
)
def test_bad_arguments_are_one_line_errors(tmp_path, args, message):
    done = loadgen(tmp_path, *args, check=False)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_a_wrong_prefix_is_caught_by_the_probe(start_server, tmp_path):
    server = start_server("blocking", "--prefix", "other:")
    done = loadgen(tmp_path, "--target", f"127.0.0.1:{server.ready['port']}", check=False)
    assert done.returncode == 2 and "--prefix" in done.stderr


@pytest.mark.parametrize("encoding", wire.ENCODINGS)
def test_wire_requests_have_the_asked_size_and_are_read_in_their_encoding(encoding):
    codec = wire.Codec(64, encoding, "服务端:")
    request = codec.request(3, 41)
    assert len(request) == 64
    if encoding == "gbk":
        with pytest.raises(UnicodeDecodeError):
            request.decode("utf-8")  # else the server would answer in UTF-8
    reply = codec.expected_reply(request)
    assert reply.decode(encoding) == "服务端:" + request.decode(encoding)
    assert codec.sequence_of(reply, 3) == 41
    assert codec.sequence_of(reply, 4) is None
    assert codec.sequence_of(reply[:-1], 3) is None


def test_the_accounting_check_can_fail():
    """in_flight is counted afresh from what is still outstanding, so a booking slip shows."""
    settings = engine.Settings("127.0.0.1", 9, concurrency=1, duration=1.0, warmup=0.0)
    counts = dict.fromkeys(engine.COUNTS, 0) | {"sent": 10, "received": 7, "lost": 2}
    empty = stats.encode(stats.new_histogram())
    part = {"part": 0, "clients": 1, "elapsed_s": 1.0, "cpu_s": 0.1, "series": [],
            "latency": empty, "uncorrected": "", "lag": ""}  # fmt: skip
    ok = runner.merge(settings, [{**part, "counts": counts | {"in_flight": 1}}], 0.0, "now")
    slip = runner.merge(settings, [{**part, "counts": counts | {"in_flight": 0}}], 0.0, "now")
    assert ok["accounting_ok"] is True and slip["accounting_ok"] is False


def test_tally_gives_the_same_histogram_as_recording_each_sample():
    samples = [1, 5, 5, 70, 1200, 1200, 1200, 99_000, 0, 70_000_000]
    direct = stats.new_histogram()
    tally = stats.Tally()
    for value in samples:
        direct.record_value(min(max(value, 1), stats.HIGHEST_US))
        tally.counts[value] = tally.counts.get(value, 0) + 1
    assert stats.percentiles(tally.flush()) == stats.percentiles(direct)
    merged = stats.merge([stats.encode(direct), stats.encode(direct)])
    assert merged.get_total_count() == 2 * len(samples)


@pytest.mark.slow
def test_interactive_client_shows_replies_and_timeouts(start_server):
    server = start_server("blocking")
    done = subprocess.run(
        [sys.executable, "-m", "loadgen.generator.client", "--target",
         f"127.0.0.1:{server.ready['port']}", "--encoding", "gbk"],
        input="你好\nhello\n".encode(), capture_output=True, cwd=ROOT, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0
    shown = done.stdout.decode()
    assert "服务端:你好" in shown and "服务端:hello    (answered in utf-8)" in shown
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        done = subprocess.run(
            [sys.executable, "-m", "loadgen.generator.client", "--target",
             f"127.0.0.1:{silent.getsockname()[1]}", "--timeout", "0.2"],
            input=b"anyone?\n", capture_output=True, cwd=ROOT, timeout=30,
        )  # fmt: skip
    assert done.returncode == 0
    assert 'no reply to line 1 ("anyone?") within 0.2 s' in done.stdout.decode()


@pytest.mark.slow
def test_the_warm_up_ends_once_the_rate_settles_and_the_window_holds_the_replies_asked(
    start_server,
):
    """Settling opens the window no sooner than the least warm-up and no later than the most;
    min_replies keeps a window open past its duration until it holds that many replies."""
    server = start_server("blocking", "--work", "io=5ms")
    settings = engine.Settings(*server.address, concurrency=4, duration=0.1, warmup=0.05,
                        warmup_max=0.5, min_replies=150, duration_max=2.0)  # fmt: skip
    result = runner.run_here(settings)
    assert 0.05 <= result["warmup_s"] <= 0.55
    # io=5ms on one loop: ~190 replies/s, so 150 replies take ~0.8 s, far past the 0.1 s asked
    assert result["received"] >= 150 and 0.5 < result["duration_s"] <= 2.1
    assert result["sent"] == result["received"] + result["lost"] + result["in_flight"]
    capped = runner.run_here(dataclasses.replace(settings, min_replies=10_000, duration_max=0.3))
    assert capped["duration_s"] == pytest.approx(0.3, abs=0.05)
