"""The command line: usage errors, --list, and the interactive mode of the original program."""

from __future__ import annotations

import ast
import os
import pty
import select
import subprocess
import sys
import time

import pytest
from helpers import ROOT, udp_client

from servers import MODELS, Model
from servers.protocol import printable


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "servers", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def test_list_prints_one_line_per_model():
    result = run_cli("--list")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == list(MODELS)


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        (["nosuchmodel"], "invalid choice"),
        ([], "MODEL is required"),
        (["threads", "--work", "cpu=fast"], "bad work term"),
        (["threads", "--work", "io=5it"], "io= takes a time"),
        (["threads", "--work", "cpu=1ms,cpu=2ms"], "given twice"),
        (["blocking", "--workers", "4"], "exactly one worker"),
        (["threads", "--workers", "0"], "not between"),
        (["threads", "--port", "70000"], "not between"),
        (["threads", "--max-size", "70000"], "not between"),
        (["threads", "--interactive"], "blocking model only"),
        (["blocking", "--interactive", "--work", "io=1ms"], "--work does not apply"),
        (["threads", "--max-request-cpu", "50"], "add it"),
        (["threads", "--work-from-request", "--max-request-wait", "0"], "more than 0"),
        (["threads", "--work-from-request", "--protocol", "sockperf"], "not with"),
        (["threads", "--switch-interval", "fast"], "not a number of milliseconds"),
    ],
)
def test_usage_errors_exit_2_with_a_message(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr


def test_unresolvable_host_is_a_one_line_error():
    result = run_cli("blocking", "--host", "no-such-host.invalid", "--port", "0")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "cannot resolve" in result.stderr


def test_a_model_whose_package_is_missing_is_reported_not_crashed():
    missing = Model("ghost", "servers.ghost:serve", "needs a package", 1, requires="no_such_pkg_x")
    assert missing.unavailable_reason() == "no_such_pkg_x is not installed"
    assert MODELS["blocking"].unavailable_reason() is None


def test_printable_escapes_what_could_drive_a_terminal():
    assert printable("plain 文字") == "plain 文字"
    assert printable("\x1b[31mred\x07") == "\\x1b[31mred\\x07"
    assert printable("a\u202eb\x00") == "a\\u202eb\\x00"


def wait_for_output(server, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in server.stderr:
        assert time.monotonic() < deadline, f"never printed {text!r}: {server.stderr}"
        time.sleep(0.01)


def test_interactive_mode_shows_the_message_and_sends_the_typed_reply(start_server):
    server = start_server("blocking", "--interactive", stdin=subprocess.PIPE)
    assert server.ready["interactive"] is True
    with udp_client() as client:
        client.sendto("你好\x1b[2J".encode("gbk"), server.address)
        wait_for_output(server, "reply> ")  # type only once the operator was shown the message
        server.proc.stdin.write("收到了\n".encode())
        server.proc.stdin.flush()
        assert client.recv(2048).decode("gbk") == "服务端:收到了"
        client.sendto(b"", server.address)  # bad input is answered without the operator
        assert client.recv(2048) == b"error: empty datagram"
    server.proc.stdin.close()  # EOF: a clean stop
    stopped = server.next_event()
    assert stopped["event"] == "stopped" and stopped["handled"] == 1
    assert server.proc.wait(10) == 0
    assert "[gbk]: 你好\\x1b[2J" in server.stderr


def loose_options(source: str) -> list[str]:
    """Where ``source`` passes options on by name lists or by position: a ``setattr`` or
    ``getattr`` with a computed name, or an experiment's ``main`` (imported ``as`` a name)
    called with more than one positional argument."""
    tree = ast.parse(source)
    mains = {alias.asname for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
             for alias in node.names if alias.name == "main" and alias.asname}  # fmt: skip
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            continue
        named = node.func.id in ("setattr", "getattr") and len(node.args) > 1
        if (named and not isinstance(node.args[1], ast.Constant)) or (
            node.func.id in mains and len(node.args) > 1
        ):
            found.append(ast.unparse(node))
    return found


def test_every_command_builds_its_settings_by_keyword():
    assert loose_options((ROOT / "loadgen" / "__main__.py").read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    "source",
    [
        "for k in names: setattr(settings, k, getattr(args, k))",
        "from m import main as demo\ndemo(args.models, args.work)",
    ],
)
def test_the_keyword_check_can_fail(source):
    assert loose_options(source)


def _read_until(fd: int, wanted: str, seen: bytearray, timeout: float = 15.0) -> str:
    """What a pseudo-terminal's program printed, until ``wanted`` shows."""
    deadline = time.monotonic() + timeout
    while wanted not in seen.decode("utf-8", "replace"):
        assert time.monotonic() < deadline, (
            f"never printed {wanted!r}: {seen.decode(errors='replace')}"
        )
        if select.select([fd], [], [], 0.1)[0]:
            seen += os.read(fd, 4096)
    return seen.decode("utf-8", "replace")


@pytest.mark.slow
def test_the_conversation_keeps_every_reply_a_person_takes_time_to_type(start_server):
    """The seed's scenario, both ends on terminals: the operator answers the first line after
    3 s (the client has sent a second meanwhile), the others at once; all three replies shown,
    in the order they came, the late one marked with its line."""
    server = start_server("blocking", "--interactive", stdin=subprocess.PIPE)
    main, child = pty.openpty()
    client = subprocess.Popen(
        [sys.executable, "-m", "loadgen.generator.client", "--target",
         f"127.0.0.1:{server.ready['port']}", "--encoding", "gbk"],
        stdin=child, stdout=child, stderr=child, cwd=ROOT, start_new_session=True,
    )  # fmt: skip
    os.close(child)
    seen = bytearray()

    def operator(reply: str) -> None:
        server.proc.stdin.write(f"{reply}\n".encode())
        server.proc.stdin.flush()

    try:
        _read_until(main, "> ", seen)
        os.write(main, "第一\n".encode())
        wait_for_output(server, "reply> ")
        time.sleep(1.0)
        os.write(main, "第二\n".encode())  # before the first is answered
        time.sleep(2.0)
        operator("回复一")  # 3 s after the first line
        _read_until(main, "回复一", seen)
        wait_for_output(server, "第二")
        operator("回复二")
        _read_until(main, "回复二", seen)
        os.write(main, "第三\n".encode())
        wait_for_output(server, "第三")
        operator("回复三")
        shown = _read_until(main, "回复三", seen)
        os.write(main, b"\x04")  # Ctrl-D
        assert client.wait(10) == 0
    finally:
        client.kill()
        os.close(main)
    replies = [line for line in shown.splitlines() if "服务端:回复" in line]
    assert [line.split("服务端:")[1][:3] for line in replies] == ["回复一", "回复二", "回复三"]
    assert '(reply to line 1, "第一", after 3.' in replies[0]
    assert "reply to line" not in replies[1] + replies[2] and "no reply" not in shown
