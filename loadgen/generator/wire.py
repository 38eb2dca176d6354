"""What the load generator puts on the wire, and how it judges what comes back.

A request's text is a fixed-width ASCII header, ``CCCCSSSSSSSSSS`` (client id, 4 hex digits;
sequence number, 10 hex digits), padded to the payload size. The header makes every reply
traceable to one request of one client; the padding makes the size what was asked for. For
GBK the padding is Chinese text whose GBK bytes are not valid UTF-8, so the server (which
tries UTF-8 first) recognises GBK and answers in it.

A reply counts only if it is exactly PREFIX + the text sent, in the encoding sent: the expected
bytes are built with ``servers.protocol``, the contract the servers themselves use.
"""

from __future__ import annotations

from enum import Enum

from servers.protocol import DEFAULT_MAX_SIZE, ERROR_PREFIX, Request, encode_reply

HEADER_SIZE = 14  # 4 hex digits of client id + 10 of sequence number
MAX_CLIENTS = 0x10000
ENCODINGS = ("utf-8", "gbk")
_PAD_UNIT = {"utf-8": ".", "gbk": "汉"}  # GBK b"\xba\xba": never valid UTF-8


class Verdict(Enum):
    """How a reply that is not simply the expected one is classified."""

    SERVER_ERROR = "server_errors"
    CORRUPT = "corrupt"


def min_payload_size(encoding: str) -> int:
    return HEADER_SIZE + (2 if encoding == "gbk" else 0)


def check_payload(size: int, encoding: str, max_size: int = DEFAULT_MAX_SIZE) -> None:
    """Raise ValueError (a message fit for the user) if no valid request has that size."""
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}")
    smallest = min_payload_size(encoding)
    if size < smallest:
        raise ValueError(f"payload size must be at least {smallest} bytes for {encoding}")
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


def classify_unmatched(reply: bytes) -> Verdict:
    """A reply that matches no request: the server's error, or corrupt."""
    return Verdict.SERVER_ERROR if reply.startswith(ERROR_PREFIX) else Verdict.CORRUPT
