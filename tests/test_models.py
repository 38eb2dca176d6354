"""One conformance suite, run against every model in the registry as a real subprocess."""

from __future__ import annotations

import ast
import contextlib
import json
import os
import select
import signal
import socket
import struct
import threading
import time
from pathlib import Path

import pytest
from helpers import ROOT, exchange, runnable_models, udp_client, wait_gone

from loadgen.experiments.stops import flood as send_flood
from servers import MODELS
from servers.interpreter import gil_enabled
from servers.protocol import DEFAULT_PREFIX, ErrorKind, WorkLimits, error_reply

ALL_MODELS = pytest.mark.parametrize("model", runnable_models())
NO_ERRORS = {kind.value: 0 for kind in ErrorKind}
PREFIX = DEFAULT_PREFIX


def test_every_model_module_is_registered_and_so_tested():
    """A serve() outside the registry would escape this parametrized suite: fail instead."""
    modules_with_serve = set()
    for path in (ROOT / "servers").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(isinstance(n, ast.FunctionDef) and n.name == "serve" for n in tree.body):
            modules_with_serve.add(f"servers.{path.stem}")
    registered = {model.target.partition(":")[0] for model in MODELS.values()}
    assert modules_with_serve - {"servers.interactive"} == registered


@pytest.mark.slow
@ALL_MODELS
def test_ready_event_describes_the_server(start_server, model):
    server = start_server(model)
    ready = server.ready
    assert ready["model"] == model
    assert ready["host"] == "127.0.0.1" and ready["port"] > 0
    assert ready["pid"] == server.proc.pid
    assert ready["workers"] == MODELS[model].workers()
    assert ready["work"] == "echo" and ready["cpu_iterations"] == 0
    assert ready["gil_enabled"] is gil_enabled()  # read inside, after the model's imports
    assert server.stop()["gil_enabled"] is gil_enabled()


@pytest.mark.slow
@ALL_MODELS
@pytest.mark.parametrize("codec", ["utf-8", "gbk"])
def test_round_trip_in_the_clients_codec(start_server, model, codec):
    server = start_server(model)
    text = "你好, 世界! hello"
    reply = exchange(server.address, text.encode(codec))
    assert reply == (PREFIX + text).encode(codec)
    assert reply.decode(codec) == PREFIX + text
    server.stop()


def _takes_sigterm(pid: int, tid: int) -> bool:
    """Whether thread ``tid`` of ``pid`` leaves SIGTERM unblocked: the kernel may hand it a
    SIGTERM sent to the process."""
    status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
    blocked = int(next(line for line in status.splitlines() if line.startswith("SigBlk:"))
                  .split()[1], 16)  # fmt: skip
    return not blocked & (1 << (signal.SIGTERM - 1))


@pytest.mark.slow
@ALL_MODELS
def test_a_stop_that_lands_on_any_thread_stops_the_server(start_server, model):
    """The kernel hands a SIGTERM sent to a process to any of its threads that does not block
    it, and Python runs the handler in the main thread only. Sent to a helper thread that takes
    it (or to the main one, where there is none), the server still stops, cleanly and soon: a
    main thread blocked in recvfrom would sleep on, undisturbed, until a datagram came."""
    import ctypes

    server = start_server(model)
    assert exchange(server.address, b"warm") == (PREFIX + "warm").encode()  # pools all up
    pid = server.pid
    helpers = [tid for tid in map(int, os.listdir(f"/proc/{pid}/task"))
               if tid != pid and _takes_sigterm(pid, tid)]  # fmt: skip
    tgkill = ctypes.CDLL(None, use_errno=True).tgkill
    assert tgkill(pid, helpers[0] if helpers else pid, signal.SIGTERM) == 0
    event = server.next_event(timeout=5)
    assert event and event["event"] == "stopped", (helpers, server.stderr)
    assert server.proc.wait(timeout=5) == 0


@pytest.mark.slow
@ALL_MODELS
def test_twenty_clients_at_once_each_get_exactly_their_replies(start_server, model):
    server = start_server(model, "--work", "io=2ms")
    clients = [udp_client() for _ in range(20)]
    rounds = 5
    try:
        for round_number in range(rounds):
            for i, client in enumerate(clients):  # all 20 in flight before any reply is read
                client.sendto(f"client {i} round {round_number}".encode(), server.address)
            for i, client in enumerate(clients):
                reply = client.recv(2048).decode()
                assert reply == f"{PREFIX}client {i} round {round_number}"
        extra, _, _ = select.select(clients, [], [], 0.05)  # nothing extra arrives, on any
        assert extra == []
    finally:
        for client in clients:
            client.close()
    stopped = server.stop()
    assert stopped["handled"] == 20 * rounds
    assert sum(stopped["per_worker"].values()) == 20 * rounds


@pytest.mark.slow
@ALL_MODELS
def test_bad_input_gets_its_error_and_the_server_keeps_serving(start_server, model):
    server = start_server(model, "--max-size", "100")
    bad = {
        ErrorKind.EMPTY: b"",
        ErrorKind.UNDECODABLE: b"\xff\xfe\x80\x81",
        ErrorKind.TOO_LARGE: b"x" * 101,
    }
    for kind, datagram in bad.items():
        assert exchange(server.address, datagram) == error_reply(kind, 100)
        assert exchange(server.address, b"still there?") == f"{PREFIX}still there?".encode()
    assert exchange(server.address, b"x" * 100) == (PREFIX + "x" * 100).encode()
    stopped = server.stop()
    assert stopped["errors"] == {**NO_ERRORS, "too_large": 1, "undecodable": 1, "empty": 1}
    assert stopped["handled"] == 4 and stopped["failed"] == 0


@pytest.mark.slow
@ALL_MODELS
def test_a_request_chooses_its_work_only_where_the_server_lets_it(start_server, model):
    plain = start_server(model)  # without --work-from-request, "@..." is text like any other
    assert exchange(plain.address, b"@io=100ms x") == f"{PREFIX}@io=100ms x".encode()
    assert plain.stop()["errors"] == NO_ERRORS
    server = start_server(model, "--work-from-request", "--max-request-wait", "500")
    assert server.ready["request_limits"]["wait_s"] == 0.5
    started = time.perf_counter()
    assert exchange(server.address, "@io=100ms 你好".encode("gbk")) == f"{PREFIX}你好".encode("gbk")
    assert time.perf_counter() - started >= 0.1  # it did wait as asked
    assert exchange(server.address, b"@cpu=2ms,io=1ms y") == f"{PREFIX}y".encode()
    limits = WorkLimits(0.1, 0.5)
    assert exchange(server.address, b"@io=600ms x") == error_reply(ErrorKind.OVER_CAP, 1024, limits)
    assert exchange(server.address, b"@cpu=100000ms x") == error_reply(
        ErrorKind.OVER_CAP, 1024, limits
    )
    assert exchange(server.address, b"@cpu=fast x") == error_reply(ErrorKind.BAD_WORK)
    stopped = server.stop()
    assert stopped["errors"] == {**NO_ERRORS, "over_cap": 2, "bad_work": 1}
    assert stopped["handled"] == 2 and stopped["failed"] == 0


@pytest.mark.slow
@ALL_MODELS
def test_stopped_counts_equal_what_was_sent(start_server, model):
    server = start_server(model)
    sent = 0
    with udp_client() as client:
        for i in range(60):
            client.sendto(f"message {i}".encode(), server.address)
            assert client.recv(2048) == f"{PREFIX}message {i}".encode()
            sent += 1
        client.sendto(b"", server.address)
        client.recv(2048)
    stopped = server.stop()
    assert stopped["handled"] == sent
    assert stopped["errors"]["empty"] == 1
    assert sum(stopped["per_worker"].values()) == sent
    assert stopped["forced"] == 0


def send_from_port_zero(address: tuple[str, int], payload: bytes) -> None:
    """A datagram whose source port is 0 (a raw socket, so root): a reply to it cannot be sent
    (Linux's sendto answers EINVAL for port 0), which is how a vanished route looks to a model."""
    try:
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
    except PermissionError:
        pytest.skip("a raw socket needs root (CAP_NET_RAW)")
    with raw:  # the UDP header: source port 0, destination port, length, no checksum
        raw.sendto(struct.pack("!HHHH", 0, address[1], 8 + len(payload), 0) + payload, address)


@pytest.mark.slow
@ALL_MODELS
def test_a_reply_that_cannot_be_sent_is_counted_as_failed_and_serving_goes_on(
    start_server, model, tmp_path
):
    trace_file = tmp_path / "trace.json"
    server = start_server(model, "--trace", str(trace_file))
    send_from_port_zero(server.address, b"nowhere to reply to")
    for i in range(3):
        assert exchange(server.address, f"after {i}".encode()) == f"{PREFIX}after {i}".encode()
    stopped = server.stop()
    assert (stopped["handled"], stopped["failed"], sum(stopped["errors"].values())) == (3, 1, 0)
    assert "reply to ('127.0.0.1', 0) failed" in server.stderr
    assert len(json.loads(trace_file.read_text())["requests"]) == 3  # sent replies only


@pytest.mark.slow
@ALL_MODELS
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_everything_within_two_seconds(start_server, model, sig):
    server = start_server(model, "--work", "io=20ms")
    tree = server.tree()
    expected_processes = 1 + (MODELS[model].workers() if MODELS[model].forks else 0)
    assert len(tree) >= expected_processes
    with udp_client() as client:  # requests in flight while the signal arrives are answered
        for i in range(5):
            client.sendto(f"late {i}".encode(), server.address)
        started = time.monotonic()
        stopped = server.stop(sig)
        replies = sorted(client.recv(2048) for _ in range(stopped["handled"]))
    assert time.monotonic() - started < 2.0
    assert replies == sorted(f"{PREFIX}late {i}".encode() for i in range(stopped["handled"]))
    assert wait_gone(tree, timeout=0.5) == []


@pytest.mark.slow
@ALL_MODELS
def test_workers_die_with_a_killed_main_process(start_server, model):
    server = start_server(model, "--work", "io=5ms")
    workers = server.tree()[1:]
    server.proc.kill()  # SIGKILL: no handler runs, the workers must notice on their own
    server.proc.wait(5)
    assert wait_gone(workers, timeout=2.0) == []


@pytest.mark.slow
@ALL_MODELS
def test_a_busy_port_is_a_one_line_error(start_server, model):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        busy = start_server(model, wait=False, port=str(port))
        assert busy.proc.wait(30) == 2
        assert busy.next_event() is None  # no event on stdout
        lines = [line for line in busy.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "in use" in lines[0], lines


@pytest.mark.slow
@ALL_MODELS
def test_cpu_work_is_a_fixed_iteration_count(start_server, model):
    server = start_server(model, "--work", "cpu=1200it,io=1ms")
    assert server.ready["cpu_iterations"] == 1200
    assert server.ready["work"] == "cpu=1200it,io=1ms"
    assert exchange(server.address, b"work") == f"{PREFIX}work".encode()
    server.stop()


@pytest.mark.slow
@pytest.mark.parametrize("model", ["blocking", "threads"])
def test_calibrated_cpu_work_is_reported(start_server, model):
    server = start_server(model, "--work", "cpu=1ms")
    assert server.ready["work"] == "cpu=1ms"
    assert server.ready["cpu_iterations"] > 100
    assert server.ready["work_exact"] == f"cpu={server.ready['cpu_iterations']}it"
    server.stop()


def test_ipv6_loopback(start_server):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no ::1 on this machine")
    server = start_server("threads", "--host", "::1")
    with udp_client(socket.AF_INET6) as client:
        client.sendto(b"six", ("::1", server.ready["port"]))
        assert client.recv(2048) == f"{PREFIX}six".encode()
    server.stop()


@pytest.mark.parametrize("host", ["", "0.0.0.0"])
def test_empty_host_listens_on_every_interface_as_the_original(start_server, host):
    server = start_server("blocking", "--host", host)
    assert server.ready["host"] == "0.0.0.0"
    assert exchange(("127.0.0.1", server.ready["port"]), b"hi") == f"{PREFIX}hi".encode()
    server.stop()


def test_custom_prefix_in_gbk_replaces_what_gbk_cannot_spell(start_server):
    server = start_server("blocking", "--prefix", "回声🔊 ")
    assert exchange(server.address, "你好".encode("gbk")) == "回声? 你好".encode("gbk")
    assert exchange(server.address, "你好".encode()) == "回声🔊 你好".encode()
    server.stop()


def test_model_files_share_one_skeleton():
    """Every model opens with a docstring and is short: the lesson is in the arrangement."""
    for model in MODELS.values():
        path = Path(ROOT, *model.target.partition(":")[0].split(".")).with_suffix(".py")
        source = path.read_text(encoding="utf-8")
        assert ast.get_docstring(ast.parse(source)), path
        assert len(source.splitlines()) <= 100, path
        assert "server.ready(" in source and "server.stopped(" in source, path


def test_the_server_contract_names_every_public_method_and_stays_short():
    """``Server``'s docstring is its contract (socketserver's way): every method a model may
    call is in it, and the class stays small enough to read at once."""
    import inspect

    from servers.runtime import Server

    contract = Server.__doc__ or ""
    public = [name for name in vars(Server) if not name.startswith("_")]
    assert len(public) >= 10
    assert [name for name in public if f"``{name}" not in contract] == []
    assert len(inspect.getsource(Server).splitlines()) <= 160


def server_assignments(source: str) -> list[str]:
    """Where ``source`` assigns an attribute of a server (``server.x =``, ``self.server.x
    +=``, ``setattr(server, ...)``): the server's state is its own (runtime.Server)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        targets = []
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setattr":
            targets = [ast.Attribute(value=node.args[0], attr="?")]
        for target in targets:
            owner = getattr(target, "value", None)
            if isinstance(target, ast.Attribute) and "server" in (
                getattr(owner, "id", None),
                getattr(owner, "attr", None),
            ):
                found.append(f"line {node.lineno}: {ast.unparse(target)}")
    return found


def test_no_model_assigns_the_servers_attributes():
    outside = [path for path in (ROOT / "servers").glob("*.py") if path.name != "runtime.py"]
    assert len(outside) > 8
    for path in outside:
        assert server_assignments(path.read_text(encoding="utf-8")) == [], path.name


@pytest.mark.parametrize(
    "source", ["server.forced = 1", "self.server.died += []", "setattr(server, 'x', 1)"]
)
def test_the_assignment_check_can_fail(source):
    assert server_assignments(source)


@pytest.mark.slow
@ALL_MODELS
def test_trace_records_every_request_with_consistent_times(start_server, model, tmp_path):
    trace_file = tmp_path / "trace.json"
    server = start_server(model, "--work", "cpu=3000it,io=1ms", "--trace", str(trace_file))
    pids = {process.pid for process in server.tree()}
    clients = [udp_client() for _ in range(3)]
    try:
        for round_number in range(2):
            for i, client in enumerate(clients):
                client.sendto(f"{i}/{round_number}".encode(), server.address)
            for client in clients:
                client.recv(2048)
        clients[0].sendto(b"", server.address)  # an error reply is traced too
        clients[0].recv(2048)
        ports = [client.getsockname()[1] for client in clients]
    finally:
        for client in clients:
            client.close()
    stopped = server.stop()
    trace = json.loads(trace_file.read_text())
    assert trace["model"] == model and trace["work"] == "cpu=3000it,io=1ms"
    records = trace["requests"]
    assert len(records) == stopped["handled"] + sum(stopped["errors"].values()) == 7
    for record in records:
        assert record["received_ns"] <= record["start_ns"] <= record["end_ns"]
        assert record["end_ns"] <= record["sent_ns"]
        assert 0 <= record["cpu_ns"] <= record["end_ns"] - record["start_ns"] + 1_000_000
        assert record["pid"] in pids and record["worker"] in stopped["per_worker"]
        marks = record["checkpoints"]  # the computation, timed in pieces: none for the error
        assert [t for t, _ in marks] == sorted(t for t, _ in marks)
        assert [c for _, c in marks] == sorted(c for _, c in marks)
        if marks:
            assert record["start_ns"] <= marks[0][0] and marks[-1][0] <= record["end_ns"]
            assert marks[-1][1] == record["cpu_ns"]
    assert [r["received_ns"] for r in records] == sorted(r["received_ns"] for r in records)
    assert sum(1 for r in records if r["cpu_ns"] > 0) == 6  # the empty datagram did no work
    assert sorted(r["source_port"] for r in records) == sorted([*ports, *ports, ports[0]])
    if MODELS[model].workers_meaning == "cap":  # a greenlet or task each, sharing a thread
        assert all(record["task"] is not None for record in records)
    else:
        assert all(record["task"] is None for record in records)
    assert not list(tmp_path.glob("trace.json.part-*"))  # the workers' parts were merged


@pytest.mark.slow
@ALL_MODELS
@pytest.mark.parametrize("into_flood_s", [0.2, 0.45], ids=["early", "late"])
def test_a_stop_during_a_flood_is_clean_and_quick(start_server, model, into_flood_s):
    """SIGTERM while datagrams pour in: the stopped event, exit 0, within 2 s, and no more
    replies reached the client than the server counted (gevent once spun here for ever)."""
    server = start_server(model)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as flooder:
        flood = threading.Thread(
            target=send_flood, args=(server.address, time.monotonic() + 0.6, flooder)
        )
        flood.start()
        try:
            time.sleep(into_flood_s)
            started = time.monotonic()
            stopped = server.stop(signal.SIGTERM, timeout=5)  # asserts the event and exit 0
            took = time.monotonic() - started
        finally:
            flood.join()
        replies = 0
        with contextlib.suppress(BlockingIOError):
            while flooder.recv(2048):
                replies += 1
    assert took < 2.0
    assert stopped["handled"] > 0 and replies <= stopped["handled"]
