"""The interactive client of the original programs: type a line, see the server's reply.

    python -m loadgen.generator.client --target 127.0.0.1:8989 [--encoding gbk]

Each line is sent as one datagram in the chosen encoding; the reply is shown decoded the same
way (with control characters escaped), or "no reply within 1 s". Ctrl-D or Ctrl-C ends it.
"""

from __future__ import annotations

import argparse
import socket
import sys

from loadgen.generator.runner import parse_target
from servers.protocol import printable


def _drain(sock: socket.socket) -> None:
    """Drop replies that came after their timeout, so they are not taken for the next one."""
    sock.setblocking(False)
    try:
        while True:
            sock.recv(65535)
    except (BlockingIOError, ConnectionRefusedError):
        pass
    finally:
        sock.setblocking(True)


def converse(sock: socket.socket, encoding: str, timeout: float) -> None:
    sock.settimeout(timeout)
    while True:
        try:
            line = input("> ")
        except (EOFError, KeyboardInterrupt):
            print()
            return
        try:
            datagram = line.encode(encoding)
        except UnicodeEncodeError as error:
            print(f"cannot send: {error.object[error.start]!r} has no {encoding} encoding")
            continue
        _drain(sock)
        sock.settimeout(timeout)
        try:
            sock.send(datagram)
            reply = sock.recv(65535)
        except TimeoutError:
            print(f"no reply within {timeout:g} s")
            continue
        except ConnectionRefusedError:
            print("no server is listening there (port unreachable)")
            continue
        except KeyboardInterrupt:
            print()
            return
        print(show(reply, encoding))


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
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for a reply")
    args = parser.parse_args(argv)
    try:
        host, port = parse_target(args.target)
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    except (ValueError, socket.gaierror) as error:
        parser.error(f"bad --target: {error}")
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        print(f"talking to {host}:{port} in {args.encoding}; Ctrl-D to end", file=sys.stderr)
        converse(sock, args.encoding, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
