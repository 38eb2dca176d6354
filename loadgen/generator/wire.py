"""What the load generator puts on the wire, and how it judges what comes back.

A request's text is a fixed-width ASCII header, ``CCCCSSSSSSSSSS`` (client id, 4 hex digits;
sequence number, 10 hex digits), padded to the payload size. The header makes every reply
traceable to one request of one client; the padding makes the size what was asked for. For
GBK the padding is Chinese text whose GBK bytes are not valid UTF-8, so the server (which
tries UTF-8 first) recognises GBK and answers in it.

A reply counts only if it is exactly PREFIX + the text sent, in the encoding sent: the expected
bytes are built with ``servers.protocol``, the contract the servers themselves use.

With ``--protocol sockperf`` (``SockperfCodec``) a request is a sockperf 3.7 message asking for
a pong (CLIENT|PONG_REQUEST), zero-padded to the payload size, and its 64-bit sequence number
carries the client id in its top 16 bits: so a reply traces to one request of one client here
too, against sockperf's own server as against ours. The reply must be the same bytes with
CLIENT cleared.
"""

from __future__ import annotations

from enum import Enum

from servers.protocol import (
    DEFAULT_MAX_SIZE,
    ERROR_PREFIX,
    SOCKPERF_CLIENT,
    SOCKPERF_HEADER,
    SOCKPERF_PONG_REQUEST,
    Request,
    encode_reply,
)

HEADER_SIZE = 14  # 4 hex digits of client id + 10 of sequence number
MAX_CLIENTS = 0x10000
SEQUENCE_BITS = 48  # sockperf: the low bits of its 64-bit sequence; the client id above them
ENCODINGS = ("utf-8", "gbk")
_PAD_UNIT = {"utf-8": ".", "gbk": "汉"}  # GBK b"\xba\xba": never valid UTF-8


class Verdict(Enum):
    """How a reply that is not simply the expected one is classified."""

    SERVER_ERROR = "server_errors"
    CORRUPT = "corrupt"


def min_payload_size(encoding: str, protocol: str = "echo") -> int:
    if protocol == "sockperf":
        return SOCKPERF_HEADER.size
    return HEADER_SIZE + (2 if encoding == "gbk" else 0)


def check_payload(
    size: int, encoding: str, max_size: int = DEFAULT_MAX_SIZE, protocol: str = "echo"
) -> None:
    """Raise ValueError (a message fit for the user) if no valid request has that size."""
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}")
    smallest = min_payload_size(encoding, protocol)
    if size < smallest:
        what = "sockperf's header" if protocol == "sockperf" else encoding
        raise ValueError(f"payload size must be at least {smallest} bytes for {what}")
    if size > max_size:
        raise ValueError(f"payload size {size} is above the server's {max_size}-byte limit")


class Codec:
    """Builds requests of one size and encoding, and the replies they must get."""

    def __init__(self, payload_size: int, encoding: str, prefix: str):
        check_payload(payload_size, encoding)
        self.encoding = encoding
        self.payload_size = payload_size
        pad_bytes = payload_size - HEADER_SIZE
        unit = _PAD_UNIT[encoding].encode(encoding)
        self.padding = unit * (pad_bytes // len(unit)) + b"." * (pad_bytes % len(unit))
        self.reply_prefix = encode_reply(Request("", encoding), prefix)
        self.reply_size = len(self.reply_prefix) + payload_size

    def request(self, client: int, sequence: int) -> bytes:
        return b"%04x%010x" % (client, sequence) + self.padding

    def expected_reply(self, request: bytes) -> bytes:
        return self.reply_prefix + request

    def sequence_of(self, reply: bytes, client: int) -> int | None:
        """The sequence number a well-formed reply to ``client`` names, else None."""
        start = len(self.reply_prefix)
        if len(reply) != self.reply_size or not reply.startswith(self.reply_prefix):
            return None
        try:
            if int(reply[start : start + 4], 16) != client:
                return None
            return int(reply[start + 4 : start + HEADER_SIZE], 16)
        except ValueError:
            return None

    def text_of(self, request: bytes) -> str:
        return request.decode(self.encoding)


class SockperfCodec:
    """Builds sockperf pong requests of one size, and the replies they must get (``Codec``'s
    interface: the engine and the probe use either)."""

    encoding = "binary"

    def __init__(self, payload_size: int):
        check_payload(payload_size, "utf-8", protocol="sockperf")
        self.payload_size = self.reply_size = payload_size
        self.padding = bytes(payload_size - SOCKPERF_HEADER.size)
        # What follows the sequence in every reply: the flags, CLIENT cleared, and the length.
        self.reply_tail = SOCKPERF_HEADER.pack(0, SOCKPERF_PONG_REQUEST, payload_size)[8:]
        self.flags = SOCKPERF_CLIENT | SOCKPERF_PONG_REQUEST

    def request(self, client: int, sequence: int) -> bytes:
        number = client << SEQUENCE_BITS | sequence
        return SOCKPERF_HEADER.pack(number, self.flags, self.payload_size) + self.padding

    def expected_reply(self, request: bytes) -> bytes:
        return request[:8] + self.reply_tail + request[SOCKPERF_HEADER.size :]

    def sequence_of(self, reply: bytes, client: int) -> int | None:
        """The sequence number a well-formed reply to ``client`` names, else None."""
        if len(reply) != self.reply_size or reply[8 : SOCKPERF_HEADER.size] != self.reply_tail:
            return None
        number = int.from_bytes(reply[:8], "big")
        if number >> SEQUENCE_BITS != client:
            return None
        return number & ((1 << SEQUENCE_BITS) - 1)

    def text_of(self, request: bytes) -> str:
        return request[: SOCKPERF_HEADER.size].hex()


def make_codec(
    protocol: str, payload_size: int, encoding: str, prefix: str
) -> Codec | SockperfCodec:
    """The codec of ``protocol`` ("echo" or "sockperf"; the last ignores encoding and prefix)."""
    if protocol == "sockperf":
        return SockperfCodec(payload_size)
    return Codec(payload_size, encoding, prefix)


def classify_unmatched(reply: bytes) -> Verdict:
    """A reply that matches no request: the server's error, or corrupt."""
    return Verdict.SERVER_ERROR if reply.startswith(ERROR_PREFIX) else Verdict.CORRUPT
