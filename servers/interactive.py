"""The original program's interactive mode: show each message, type the reply by hand.

Single-threaded, like the teaching texts' server: receive a datagram, print who sent it, in which
codec and what it says, then wait for the operator to type the reply line; the reply is
PREFIX + line in the sender's codec. Bad datagrams are answered with their error automatically.
Everything shown goes to stderr (stdout keeps its JSON events). EOF on stdin (Ctrl-D) stops,
even while no message is waiting: the loop watches the socket and stdin together.

Received text is shown with control characters escaped: a datagram from anyone on the network
must not be able to move the operator's cursor, recolour the terminal or retitle the window.
"""

from __future__ import annotations

import os
import selectors
import signal
import sys

from servers import protocol
from servers.protocol import printable
from servers.runtime import Server, log


class _StopServing(Exception):
    pass


class _LineReader:
    """Lines from a file descriptor, with no hidden buffer that select() cannot see."""

    def __init__(self, fd: int):
        self.fd = fd
        self.pending = b""

    def has_line(self) -> bool:
        return b"\n" in self.pending

    def readline(self) -> str | None:
        """The next line without its newline; None at end of input."""
        while b"\n" not in self.pending:
            chunk = os.read(self.fd, 4096)
            if not chunk:
                if not self.pending:
                    return None
                self.pending += b"\n"  # a last line without a newline still counts
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return line.decode("utf-8", "replace").rstrip("\r")


def _raise_stop(*_: object) -> None:
    raise _StopServing


def serve(server: Server) -> None:
    # Blocked in select or in a read, a signal simply ends the session: nothing runs in parallel.
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    server.count_per_worker(["main"])
    stdin = _LineReader(sys.stdin.fileno())
    watch = selectors.DefaultSelector()
    watch.register(server.sock, selectors.EVENT_READ)
    watch.register(stdin.fd, selectors.EVENT_READ)
    server.ready(interactive=True)
    log("waiting for messages; type each reply and press Enter (Ctrl-D to stop)")
    try:
        while True:
            ready = {key.fileobj for key, _ in watch.select()}
            if stdin.fd in ready or stdin.has_line():  # typed with no message waiting
                if stdin.readline() is None:
                    break
                log("(no message to reply to yet; line ignored)")
            if server.sock in ready and not _answer_one(server, stdin):
                break
    except _StopServing:
        log("signal received: stopping")
    else:
        log("end of input: stopping")
    server.stopped()


def _answer_one(server: Server, stdin: _LineReader) -> bool:
    """Receive one datagram and reply to it; False once stdin has ended."""
    datagram, address = server.sock.recvfrom(server.bufsize)
    decoded = protocol.decode(datagram, server.config.max_size)
    if isinstance(decoded, protocol.Rejected):
        log(f"from {address}: {decoded.kind.value}, answered {decoded.reply.decode()!r}")
        reply, kind = decoded.reply, decoded.kind
    else:
        log(f"from {address} [{decoded.codec}]: {printable(decoded.text)}")
        print("reply> ", end="", file=sys.stderr, flush=True)
        line = stdin.readline()
        if line is None:
            return False
        # What the operator typed may hold characters the sender's codec lacks: "?" them.
        reply, kind = (server.config.prefix + line).encode(decoded.codec, "replace"), None
    server.count(0, kind)
    try:
        server.sock.sendto(reply, address)
    except OSError as error:
        server.unsent(datagram, address, error)
    return True
