"""sockperf's protocol: the pure decision, every model speaking it, and sockperf itself.

The tests that run the ``sockperf`` binary (Debian's package, 3.7) skip, saying so, where it
is not installed; ``make`` installs it when run as root.
"""

from __future__ import annotations

import json
import shutil
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ROOT, exchange, runnable_models, udp_client
from hypothesis import given, settings
from hypothesis import strategies as st

from loadgen.experiments.interop import SockperfServer, median_of, parse_sockperf, ratios
from loadgen.generator import wire
from loadgen.harness.server import ServerProcess
from servers import MODELS
from servers.counters import FIELDS
from servers.protocol import (
    DEFAULT_MAX_SIZE,
    SOCKPERF_CLIENT,
    SOCKPERF_HEADER,
    SOCKPERF_PONG_REQUEST,
    SOCKPERF_WARMUP,
    ErrorKind,
    Ignored,
    sockperf_message,
    sockperf_parse,
    sockperf_respond,
)

ALL_MODELS = pytest.mark.parametrize("model", runnable_models())
SOCKPERF = shutil.which("sockperf")
needs_sockperf = pytest.mark.skipif(
    SOCKPERF is None, reason="the sockperf binary is not installed (apt-get install sockperf)"
)
PING = SOCKPERF_CLIENT | SOCKPERF_PONG_REQUEST


# -- the pure decision ------------------------------------------------------------------------


def test_a_pong_request_is_answered_with_the_same_bytes_and_client_cleared():
    message = SOCKPERF_HEADER.pack(7, PING, 20) + b"abcdef"
    reply, why = sockperf_respond(message)
    assert why is None
    assert reply == SOCKPERF_HEADER.pack(7, SOCKPERF_PONG_REQUEST, 20) + b"abcdef"


@pytest.mark.parametrize(
    ("message", "why"),
    [
        (sockperf_message(1, SOCKPERF_PONG_REQUEST, 14), Ignored.NOT_CLIENT),
        (sockperf_message(1, PING | SOCKPERF_WARMUP, 14), Ignored.WARMUP),
        (sockperf_message(1, SOCKPERF_CLIENT, 64), Ignored.NO_PONG),
        (b"\x00" * 13, Ignored.SHORT),
        (b"", Ignored.SHORT),
        (sockperf_message(1, PING, DEFAULT_MAX_SIZE + 1), Ignored.OVERSIZED),
        (SOCKPERF_HEADER.pack(1, PING, 30) + b"x" * 6, Ignored.BAD_LENGTH),
    ],
    ids=lambda value: value.value if isinstance(value, Ignored) else None,
)
def test_what_gets_no_answer_and_why(message, why):
    assert sockperf_respond(message) == (None, why)


def test_ignored_kinds_never_share_a_counter_with_error_kinds():
    assert len(set(FIELDS)) == len(FIELDS)
    assert not {kind.value for kind in Ignored} & {kind.value for kind in ErrorKind}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=DEFAULT_MAX_SIZE + 200))
def test_any_datagram_is_answered_as_sockperf_would_or_ignored_with_a_reason(datagram):
    reply, why = sockperf_respond(datagram)
    assert (reply is None) != (why is None)
    header = sockperf_parse(datagram)
    if reply is not None:  # answered: only a well-formed client's pong request, whole
        assert header is not None and header.length == len(datagram) <= DEFAULT_MAX_SIZE
        assert header.flags & PING == PING and not header.flags & SOCKPERF_WARMUP
        assert len(reply) == len(datagram) and reply[14:] == datagram[14:]
        assert sockperf_parse(reply).flags == header.flags & ~SOCKPERF_CLIENT
        assert sockperf_parse(reply).sequence == header.sequence


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 2**64 - 1),
    st.integers(0, 0xFFFF),
    st.integers(SOCKPERF_HEADER.size, DEFAULT_MAX_SIZE),
)
def test_a_well_formed_message_is_answered_exactly_when_sockperf_asks(sequence, flags, size):
    message = sockperf_message(sequence, flags, size)
    reply, why = sockperf_respond(message)
    asks = flags & PING == PING and not flags & SOCKPERF_WARMUP
    assert (reply is not None) == asks
    if asks:
        assert reply == sockperf_message(sequence, flags & ~SOCKPERF_CLIENT, size)


# -- every model, with --protocol sockperf ------------------------------------------------------


@pytest.mark.slow
@ALL_MODELS
def test_every_model_answers_pongs_and_counts_what_it_ignores(start_server, model):
    server = start_server(model, "--protocol", "sockperf", "--max-size", "100")
    assert server.ready["protocol"] == "sockperf"
    ignored = [
        sockperf_message(1, SOCKPERF_CLIENT, 14),  # under-load's message between pongs
        sockperf_message(2, PING | SOCKPERF_WARMUP, 14),
        sockperf_message(3, SOCKPERF_PONG_REQUEST, 14),  # not a client's
        b"short",
        sockperf_message(4, PING, 101),  # over --max-size
        SOCKPERF_HEADER.pack(5, PING, 99) + b"x",  # says 99 bytes, has 15
    ]
    with udp_client() as client:
        for message in ignored:  # on one socket, before the pong: no answer may come first
            client.sendto(message, server.address)
        client.sendto(sockperf_message(6, PING, 64), server.address)
        assert client.recv(2048) == sockperf_message(6, SOCKPERF_PONG_REQUEST, 64)
        client.settimeout(0.1)
        with pytest.raises(TimeoutError):
            client.recv(2048)
    assert exchange(server.address, sockperf_message(2**63, PING, 100))[8:10] == b"\x00\x02"
    stopped = server.stop()
    assert stopped["handled"] == 2 and stopped["failed"] == 0
    assert sum(stopped["errors"].values()) == 0
    assert stopped["ignored"] == {
        "not_client": 1, "warmup": 1, "no_pong": 1, "short": 1, "oversized": 1, "bad_length": 1,
    }  # fmt: skip


def test_work_runs_for_answered_messages_only(start_server):
    server = start_server("blocking", "--protocol", "sockperf", "--work", "io=1ms")
    with udp_client() as client:
        client.sendto(sockperf_message(1, SOCKPERF_CLIENT, 14), server.address)
        client.sendto(sockperf_message(2, PING, 14), server.address)
        reply = client.recv(2048)
    assert struct.unpack_from("!Q", reply)[0] == 2
    stopped = server.stop()
    assert (stopped["handled"], stopped["ignored"]["no_pong"]) == (1, 1)


def test_the_echo_protocol_is_still_the_default(start_server):
    server = start_server("blocking")
    assert server.ready["protocol"] == "echo"
    reply = exchange(server.address, b"hi")
    assert reply.endswith(b"hi") and len(reply) > 2
    stopped = server.stop()
    assert sum(stopped["ignored"].values()) == 0


# -- sockperf's own client against every model ------------------------------------------------


def run_sockperf(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SOCKPERF, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def ping_pong_every_model() -> Iterator[dict[str, tuple[int, str, dict]]]:
    """sockperf ping-pong against every model at once: each run is one second of traffic and
    two of sockperf's own waiting, so eight in turn took 27 s; together, about four.
    model -> (sockperf's exit status, its output, the server's stopped event)."""
    servers = {model: ServerProcess([model, "--port", "0", "--protocol", "sockperf"])
               for model in MODELS if MODELS[model].unavailable_reason() is None}  # fmt: skip
    try:
        clients = {}
        for model, server in servers.items():
            server.wait_ready()
            host, port = server.address
            clients[model] = subprocess.Popen(
                [SOCKPERF, "ping-pong", "-i", host, "-p", str(port), "-t", "1"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
        outputs = {model: client.communicate(timeout=30)[0] for model, client in clients.items()}
        yield {
            model: (clients[model].returncode, outputs[model], server.stop())
            for model, server in servers.items()
        }
    finally:
        for server in servers.values():
            server.close()


@pytest.mark.slow
@needs_sockperf
@ALL_MODELS
def test_sockperf_ping_pong_runs_clean_against_every_model(ping_pong_every_model, model):
    returncode, output, stopped = ping_pong_every_model[model]
    assert returncode == 0, output
    assert "ERROR" not in output and "Summary:" in output, output
    assert stopped["handled"] > 0 and stopped["failed"] == 0


@pytest.mark.slow
@needs_sockperf
def test_the_blocking_model_serves_sockperf_under_load(start_server):
    server = start_server("blocking", "--protocol", "sockperf")
    host, port = server.address
    done = run_sockperf("under-load", "-i", host, "-p", str(port), "-t", "1", "--mps", "2000")
    assert done.returncode == 0 and "Summary:" in done.stdout + done.stderr
    stopped = server.stop()
    assert stopped["ignored"]["no_pong"] > 50 * stopped["handled"] > 0  # one pong in 100


def test_a_server_never_answers_a_servers_reply_so_two_never_loop(start_server):
    server = start_server("blocking", "--protocol", "sockperf")
    reply = exchange(server.address, sockperf_message(9, PING, 14))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.1)
        sock.sendto(reply, server.address)
        with pytest.raises(TimeoutError):
            sock.recv(2048)
    assert server.stop()["ignored"]["not_client"] == 1


# -- our generator speaking sockperf ------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.integers(0, wire.MAX_CLIENTS - 1), st.integers(0, 2**40), st.integers(14, 1024))
def test_a_sockperf_request_traces_back_to_its_client_and_sequence(client, sequence, size):
    codec = wire.SockperfCodec(size)
    request = codec.request(client, sequence)
    assert len(request) == size
    header = sockperf_parse(request)
    assert header.flags == PING and header.length == size
    reply = codec.expected_reply(request)
    assert reply == sockperf_respond(request, max_size=1024)[0]  # what our servers send
    assert codec.sequence_of(reply, client) == sequence
    assert codec.sequence_of(reply, (client + 1) % wire.MAX_CLIENTS) is None
    assert codec.sequence_of(request, client) is None  # CLIENT still set: not a reply
    assert codec.sequence_of(reply[:-1], client) is None


def test_a_sockperf_payload_below_the_header_is_refused():
    with pytest.raises(ValueError, match="at least 14"):
        wire.SockperfCodec(13)


def generate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "loadgen", "run", "--quiet", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def generate_result(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "result.json"
    done = generate("--json", str(out), "--warmup", "0.1", "--duration", "0.5", *args)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["accounting_ok"] and result["protocol"] == "sockperf"
    assert result["lost"] == result["corrupt"] == 0
    return result


@pytest.mark.slow
@pytest.mark.parametrize("mode", [("--concurrency", "4"), ("--mode", "open", "--rate", "500")])
def test_our_generator_drives_our_server_in_sockperf(start_server, tmp_path, mode):
    server = start_server("threads", "--protocol", "sockperf")
    target = f"127.0.0.1:{server.ready['port']}"
    result = generate_result(tmp_path, "--protocol", "sockperf", "--target", target, *mode)
    stopped = server.stop()
    assert result["received"] > 0 and stopped["handled"] >= result["received"]


@pytest.mark.slow
@needs_sockperf
def test_our_generator_drives_sockperfs_own_server(tmp_path):
    with SockperfServer() as server:  # ready: it has answered a pong
        target = "{}:{}".format(*server.address)
        args = ("--protocol", "sockperf", "--target", target, "--concurrency", "3")
        result = generate_result(tmp_path, *args, "--payload-size", "100")
        assert result["received"] > 0
    assert server.proc.poll() is not None  # ended on the way out


@pytest.mark.slow
def test_the_probe_names_the_other_protocol(start_server):
    echo = start_server("blocking")
    target = f"127.0.0.1:{echo.ready['port']}"
    done = generate("--protocol", "sockperf", "--target", target)
    assert done.returncode == 2 and "answered as the echo server does" in done.stderr
    sockperf = start_server("blocking", "--protocol", "sockperf")
    target = f"127.0.0.1:{sockperf.ready['port']}"
    done = generate("--target", target, "--timeout", "0.3")
    assert done.returncode == 2 and "--protocol sockperf" in done.stderr, done.stderr


def test_echo_options_are_refused_with_sockperf():
    done = generate("--protocol", "sockperf", "--target", "127.0.0.1:9", "--encoding", "gbk")
    assert done.returncode == 2 and "--protocol echo" in done.stderr


# -- reading sockperf's output ------------------------------------------------------------------

SOCKPERF_OUTPUT = """\
sockperf: [Total Run] RunTime=1.001 sec; Warm up time=400 msec; SentMessages=23142; ReceivedMessages=23141
sockperf: ========= Printing statistics for Server No: 0
sockperf: [Valid Duration] RunTime=0.550 sec; SentMessages=10131; ReceivedMessages=10131
sockperf: \x1b[2;35m====> avg-rtt=54.308 (std-dev=23.257)\x1b[0m
sockperf: # dropped messages = 0; # duplicated messages = 2; # out-of-order messages = 1
sockperf: Summary: Round trip is 54.308 usec
sockperf: \x1b[2;35mTotal 10131 observations\x1b[0m; each percentile contains 101.31 observations
sockperf: ---> <MAX> observation = 1939.200
sockperf: ---> percentile 99.999 = 1939.200
sockperf: ---> percentile 99.000 =   80.010
sockperf: ---> percentile 50.000 =   53.069
sockperf: ---> <MIN> observation =    9.544
"""  # noqa: E501  (sockperf 3.7's own lines, from a real run here)


def test_sockperfs_summary_is_read_as_round_trips():
    figures = parse_sockperf(SOCKPERF_OUTPUT)
    assert figures["received"] == figures["observations"] == 10131
    assert figures["replies_per_s"] == round(10131 / 0.550, 1)
    assert (figures["p50_us"], figures["p99_us"], figures["max_us"]) == (53.069, 80.010, 1939.2)
    assert (figures["dropped"], figures["duplicated"], figures["out_of_order"]) == (0, 2, 1)


def test_half_round_trips_are_doubled_and_a_missing_summary_is_an_error():
    half = SOCKPERF_OUTPUT.replace("Round trip is", "Latency is")
    assert parse_sockperf(half)["p50_us"] == 2 * 53.069
    with pytest.raises(ValueError):
        parse_sockperf("sockperf: ERROR: nothing")


def test_trials_are_summed_up_by_each_figures_median_and_ratios_are_ours_over_theirs():
    trials = [{"replies_per_s": r, "p50_us": p, "p99_us": None, "ok": ok}
              for r, p, ok in ((100, 10, True), (300, 30, True), (200, 20, False))]  # fmt: skip
    row = median_of(trials)
    assert (row["replies_per_s"], row["p50_us"], row["p99_us"]) == (200, 20, None)
    assert row["ok"] is False and row["trials"] == trials
    theirs = {"replies_per_s": 400, "p50_us": 10, "p99_us": 0}
    assert ratios(row, theirs) == {"replies_per_s": 0.5, "p50_us": 2.0, "p99_us": None}


@pytest.mark.slow
@needs_sockperf
@pytest.mark.timeout(150)  # ten runs of about 1.5 s, three servers started and stopped
def test_the_interop_command_runs_both_clients_on_both_servers_and_ends_them(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "loadgen", "interop", "--models", "blocking", "--seconds", "1",
         "--trials", "1", "--mps", "1000", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    saved = json.loads((tmp_path / "interop.json").read_text())
    sides = {(row["server"], row["shape"], row["side"]) for row in saved["rows"]}
    assert len(sides) == len(saved["rows"]) == 10  # 2 servers x (2 ping-pong + 3 under-load)
    assert all(row["ok"] and row["replies_per_s"] for row in saved["rows"]), saved["rows"]
    assert [check["model"] for check in saved["model_checks"]] == ["blocking"]
    assert "ours/sockperf" in done.stdout and "closed loop, 1 client" in json.dumps(saved)
    assert saved["sockperf"].startswith("sockperf, version 3.")
