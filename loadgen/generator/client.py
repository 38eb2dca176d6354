"""The interactive client of the original programs: type a line, see the server's reply.

    python -m loadgen.generator.client --target 127.0.0.1:8989 [--encoding gbk] [--timeout 30]

Each line is sent as one datagram in the chosen encoding. Every reply is shown whenever it
arrives, by a thread of its own, decoded the same way (with control characters escaped), so a
person answering by hand at the other end (``python -m servers blocking --interactive``) may
take their time: a reply that comes after the next line was sent is shown too, marked with the
line it answers. Replies are taken to answer the lines in the order they were sent (one server
loop answers one datagram after another), unless a reply ends with a later line's text, as an
echo does. After ``--timeout`` seconds (default 30) with no reply the client says so once, and
goes on listening: nothing is dropped. Ctrl-D ends it once the replies still due have come (or
after ``--timeout``); Ctrl-C at once.
"""

from __future__ import annotations

import argparse
import collections
import socket
import sys
import threading
import time
from dataclasses import dataclass, field

from loadgen.generator.runner import parse_target
from servers.protocol import printable

POLL_S = 0.1  # how often the listening thread looks at the clock while no reply comes


@dataclass
class Line:
    number: int
    text: str
    sent_at: float = field(default_factory=time.monotonic)
    overdue_said: bool = False


class Conversation:
    """The lines sent and not yet answered, and the thread that shows every reply."""

    def __init__(self, sock: socket.socket, encoding: str, timeout: float) -> None:
        self.sock, self.encoding, self.timeout = sock, encoding, timeout
        self.waiting: collections.deque[Line] = collections.deque()
        self.sent = 0
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.listener = threading.Thread(target=self._listen, daemon=True)

    def send(self, text: str) -> None:
        try:
            datagram = text.encode(self.encoding)
        except UnicodeEncodeError as error:
            say(f"cannot send: {error.object[error.start]!r} has no {self.encoding} encoding")
            return
        with self.lock:
            self.sent += 1
            self.waiting.append(Line(self.sent, text))
        try:
            self.sock.send(datagram)
        except ConnectionRefusedError:
            self._refused()

    def _listen(self) -> None:
        self.sock.settimeout(POLL_S)
        while not self.done.is_set():
            try:
                reply = self.sock.recv(65535)
            except TimeoutError:
                self._say_overdue()
                continue
            except ConnectionRefusedError:
                self._refused()
                continue
            except OSError:  # the socket was closed: the conversation is over
                return
            say(self._told(reply))

    def _told(self, reply: bytes) -> str:
        """The reply as shown: marked with its line when a later line was sent meanwhile."""
        text = show(reply, self.encoding)
        with self.lock:
            answered = next((line for line in self.waiting
                             if reply.endswith(line.text.encode(self.encoding))),
                            self.waiting[0] if self.waiting else None)  # fmt: skip
            if answered is None:
                return f"{text}    (a reply to no line waiting for one)"
            self.waiting.remove(answered)
            if answered.number == self.sent:
                return text
        took = time.monotonic() - answered.sent_at
        return f'{text}    (reply to line {answered.number}, "{answered.text}", after {took:.1f} s)'

    def _say_overdue(self) -> None:
        with self.lock:
            overdue = [line for line in self.waiting if not line.overdue_said
                       and time.monotonic() - line.sent_at >= self.timeout]  # fmt: skip
            for line in overdue:
                line.overdue_said = True
        for line in overdue:
            say(f'no reply to line {line.number} ("{line.text}") within {self.timeout:g} s; '
                "still listening")  # fmt: skip

    def _refused(self) -> None:
        with self.lock:
            if self.waiting:
                self.waiting.pop()  # what was just sent found no one
        say("no server is listening there (port unreachable)")

    def finish(self) -> None:
        """At the end of input: wait for the replies still due, ``timeout`` at most."""
        deadline = time.monotonic() + self.timeout
        while self.waiting and time.monotonic() < deadline:
            time.sleep(POLL_S / 2)
        self.done.set()
        self._say_overdue()  # what never came, said before leaving


def say(text: str) -> None:
    """One line of the conversation, printed whole even while the prompt waits for input."""
    if sys.stdout.isatty():
        print(f"\r\x1b[K{text}", flush=True)
        print("> ", end="", flush=True)
    else:
        print(text, flush=True)


def converse(sock: socket.socket, encoding: str, timeout: float) -> None:
    conversation = Conversation(sock, encoding, timeout)
    conversation.listener.start()
    try:
        while True:
            try:
                line = input("> ")
            except EOFError:
                print()
                conversation.finish()
                return
            conversation.send(line)
    except KeyboardInterrupt:
        print()
    finally:
        conversation.done.set()


def show(reply: bytes, encoding: str) -> str:
    """The reply as text. ASCII-only text is valid UTF-8, so the server answers a GBK client's
    "hello" in UTF-8: read the reply in the client's codec, else in the other, and say so."""
    for codec in (encoding, *(c for c in ("utf-8", "gbk") if c != encoding)):
        try:
            text = printable(reply.decode(codec))
        except UnicodeDecodeError:
            continue
        return text if codec == encoding else f"{text}    (answered in {codec})"
    return printable(reply.decode(encoding, "replace"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadgen.generator.client", description=__doc__)
    parser.add_argument("--target", default="127.0.0.1:8989", help="HOST:PORT of the server")
    parser.add_argument("--encoding", choices=("utf-8", "gbk"), default="utf-8")
    parser.add_argument(
        "--timeout", type=float, default=30.0,
        help="seconds without a reply before saying so (it is still shown if it comes); at "
        "the end of input, the most to wait for replies still due",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    try:
        host, port = parse_target(args.target)
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    except (ValueError, socket.gaierror) as error:
        parser.error(f"bad --target: {error}")
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        print(f"talking to {host}:{port} in {args.encoding}; every reply is shown when it comes; "
              "Ctrl-D to end", file=sys.stderr)  # fmt: skip
        converse(sock, args.encoding, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
