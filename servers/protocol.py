"""The echo-and-reply contract, as pure functions (no I/O).

Two protocols. ``echo`` (the default): a request is one UDP datagram of text in UTF-8 or GBK.
The reply is PREFIX + text, encoded in the codec the request used, so a GBK client can read it.
Bad input is never dropped silently and never truncated: it gets a short ASCII ``error: ...``
reply and is counted by kind.

The codec is guessed, not declared: UTF-8 is tried first, GBK second, both strictly. Some GBK
byte strings are also valid UTF-8 (GBK "专业" is d7 a8 d2 b5, which UTF-8 reads as "רҵ"); such a
datagram is taken as UTF-8 and answered in UTF-8. That ambiguity belongs to the original program's
design (the wire carries no codec name); a client that must be sure sends text whose GBK bytes
are not valid UTF-8, which is true of almost every real sentence.

``sockperf``: the messages of Mellanox's sockperf 3.7 (src/message.h), so its C++ client can
drive our servers and our generator its server: a 14-byte header in network byte order, ``!QHI``
= sequence, flags, length (of the whole message, header included), then padding. A server
answers only a client's message that asks for a pong, with the same bytes and CLIENT cleared;
everything else (a warm-up, under-load's messages between pongs, a malformed message) gets no
answer at all, since sockperf's client would take any answer as a reply. So nothing is dropped
silently: each unanswered message is counted by why (``Ignored``).

Work chosen by the request (``--work-from-request``, off by default): an echo request
``@SPEC TEXT`` (SPEC as ``--work`` takes it: ``@cpu=20ms hello``, ``@cpu=41234it,io=5ms hi``)
gets that work instead of the server's and the reply PREFIX + TEXT. A SPEC that does not parse,
or asks past the server's ``WorkLimits``, gets a short error reply at once, with no work done.
Without the option, ``@...`` is text like any other, echoed whole.
"""

from __future__ import annotations

import math
import struct
import unicodedata
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Literal, get_args

from servers.work import Work, parse

DEFAULT_PREFIX = "服务端:"
DEFAULT_MAX_SIZE = 1024
Codec = Literal["utf-8", "gbk"]  # what a datagram's text is decoded as, and its reply encoded in
CODECS: tuple[Codec, ...] = get_args(Codec)
ERROR_PREFIX = b"error: "
WireProtocol = Literal["echo", "sockperf"]  # the teaching texts' echo, or sockperf 3.7's messages
PROTOCOLS: tuple[WireProtocol, ...] = get_args(WireProtocol)
SOCKPERF_HEADER = struct.Struct("!QHI")  # sequence, flags, length (whole message)
SOCKPERF_CLIENT, SOCKPERF_PONG_REQUEST, SOCKPERF_WARMUP = 1, 2, 4
WORK_MARK = "@"  # with --work-from-request, a request that starts with it names its work


class ErrorKind(StrEnum):
    """Why a datagram could not be answered with an echo; the names are the counters' keys."""

    TOO_LARGE = "too_large"
    UNDECODABLE = "undecodable"
    EMPTY = "empty"
    BAD_WORK = "bad_work"  # --work-from-request: the SPEC of ``@SPEC TEXT`` does not parse
    OVER_CAP = "over_cap"  # --work-from-request: it asks for more than the server allows


class Ignored(StrEnum):
    """Why a sockperf message gets no answer; the names are counters' keys, so none may equal an
    ``ErrorKind``'s (a StrEnum member equals its value: the two would share a counter)."""

    NOT_CLIENT = "not_client"  # a server's message (CLIENT clear): answering could loop
    WARMUP = "warmup"  # sockperf never answers its warm-up messages
    NO_PONG = "no_pong"  # under-load: only every Nth message asks for an answer
    SHORT = "short"  # shorter than the 14-byte header
    OVERSIZED = "oversized"  # longer than the server's buffer (--max-size)
    BAD_LENGTH = "bad_length"  # the length field disagrees with the datagram's size


@dataclass(frozen=True, slots=True)
class Request:
    text: str
    codec: str


@dataclass(frozen=True, slots=True)
class WorkLimits:
    """What a request may ask for with ``@SPEC TEXT``: at most ``cpu_s`` of computation and
    ``wait_s`` of waiting (``io=`` and ``block=`` together). ``iterations_per_s`` is the server's
    calibrated speed (0 until measured): it turns ``cpu=20ms`` into an iteration count, and a
    count into the time the cap is checked against."""

    cpu_s: float = 0.1
    wait_s: float = 1.0
    iterations_per_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Answer:
    """What to do with one datagram: the reply (None: none, sockperf's), how it counts (None:
    answered), and the work it asked for (None: the server's own)."""

    reply: bytes | None
    kind: ErrorKind | Ignored | None = None
    work: Work | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    kind: ErrorKind
    reply: bytes


def error_reply(
    kind: ErrorKind, max_size: int = DEFAULT_MAX_SIZE, limits: WorkLimits = WorkLimits()
) -> bytes:
    """The short ASCII reply to a bad datagram (at most 64 bytes)."""
    if kind is ErrorKind.TOO_LARGE:
        text = f"error: datagram larger than {max_size} bytes"
    elif kind is ErrorKind.UNDECODABLE:
        text = "error: datagram is neither utf-8 nor gbk"
    elif kind is ErrorKind.BAD_WORK:
        text = "error: bad work spec after @ (try @cpu=20ms TEXT)"
    elif kind is ErrorKind.OVER_CAP:
        text = (f"error: work over the cap (cpu {_ms(limits.cpu_s)}, "
                f"waits {_ms(limits.wait_s)})")  # fmt: skip
    else:
        text = "error: empty datagram"
    return text.encode("ascii")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.6g}ms"


def decode(datagram: bytes, max_size: int = DEFAULT_MAX_SIZE) -> Request | Rejected:
    """Read a datagram as UTF-8, else GBK; reject empty, oversized or undecodable ones.

    ``datagram`` must have been received into a buffer of at least ``max_size + 1`` bytes:
    the kernel truncates a UDP datagram to the buffer silently, so only a buffer one byte
    larger than the limit can tell "exactly max_size" from "more than max_size".
    """
    if not datagram:
        return Rejected(ErrorKind.EMPTY, error_reply(ErrorKind.EMPTY, max_size))
    if len(datagram) > max_size:
        return Rejected(ErrorKind.TOO_LARGE, error_reply(ErrorKind.TOO_LARGE, max_size))
    for codec in CODECS:
        try:
            return Request(datagram.decode(codec), codec)
        except UnicodeDecodeError:
            continue
    return Rejected(ErrorKind.UNDECODABLE, error_reply(ErrorKind.UNDECODABLE, max_size))


def encode_reply(request: Request, prefix: str = DEFAULT_PREFIX) -> bytes:
    """PREFIX + text in the request's codec.

    A prefix the request's codec cannot spell (say "→" for a GBK client) is replaced
    character by character with "?" rather than failing: the text itself always round-trips,
    since it was decoded from that codec.
    """
    return prefix.encode(request.codec, "replace") + request.text.encode(request.codec)


def respond(
    datagram: bytes, prefix: str = DEFAULT_PREFIX, max_size: int = DEFAULT_MAX_SIZE
) -> tuple[bytes, ErrorKind | None]:
    """The whole contract in one call: the reply bytes and, for bad input, why it was bad."""
    told = answer(datagram, prefix, max_size)
    return told.reply, told.kind


def answer(
    datagram: bytes,
    prefix: str = DEFAULT_PREFIX,
    max_size: int = DEFAULT_MAX_SIZE,
    limits: WorkLimits | None = None,
) -> Answer:
    """``respond``, and with ``limits`` (``--work-from-request``) the work ``@SPEC TEXT``
    asks for: the reply is then PREFIX + TEXT, or an error if SPEC is bad or over the limits."""
    decoded = decode(datagram, max_size)
    if isinstance(decoded, Rejected):
        return Answer(decoded.reply, decoded.kind)
    if limits is None or not decoded.text.startswith(WORK_MARK):
        return Answer(encode_reply(decoded, prefix))
    chosen = chosen_work(decoded.text, limits)
    if isinstance(chosen, ErrorKind):
        return Answer(error_reply(chosen, max_size, limits), chosen)
    work, text = chosen
    return Answer(encode_reply(Request(text, decoded.codec), prefix), None, work)


def chosen_work(text: str, limits: WorkLimits) -> tuple[Work, str] | ErrorKind:
    """``@SPEC TEXT`` read: the work SPEC asks for, calibrated, and TEXT; or why it cannot be
    done (``BAD_WORK``: SPEC does not parse; ``OVER_CAP``: it asks past ``limits``)."""
    spec, _, rest = text.removeprefix(WORK_MARK).partition(" ")
    try:
        work = parse(spec, most_s=math.inf)  # past the limits is OVER_CAP, not BAD_WORK
    except ValueError:
        return ErrorKind.BAD_WORK
    rate = limits.iterations_per_s
    if work.cpu_iterations is None:  # asked as a time: in this server's iterations
        work = replace(work, cpu_iterations=max(1, round(work.cpu_seconds * rate)))
    if rate:
        cpu_s = work.cpu_iterations / rate
    else:  # not calibrated: no computation can be judged within the cap
        cpu_s = math.inf if work.cpu_iterations else 0.0
    if cpu_s > limits.cpu_s or work.io_seconds + work.block_seconds > limits.wait_s:
        return ErrorKind.OVER_CAP
    return work, rest


@dataclass(frozen=True, slots=True)
class SockperfHeader:
    sequence: int
    flags: int
    length: int


def sockperf_parse(datagram: bytes) -> SockperfHeader | None:
    """The header of a sockperf message, or None if the datagram is shorter than one."""
    if len(datagram) < SOCKPERF_HEADER.size:
        return None
    return SockperfHeader(*SOCKPERF_HEADER.unpack_from(datagram))


def sockperf_message(sequence: int, flags: int, size: int) -> bytes:
    """A sockperf message of ``size`` bytes (at least the header): the header, zero padding."""
    return SOCKPERF_HEADER.pack(sequence, flags, size) + bytes(size - SOCKPERF_HEADER.size)


def sockperf_respond(
    datagram: bytes, max_size: int = DEFAULT_MAX_SIZE
) -> tuple[bytes, None] | tuple[None, Ignored]:
    """The answer to a sockperf message and None, or None and why it gets no answer.

    ``datagram`` must come from a buffer of ``max_size + 1`` bytes (see ``decode``). The checks
    go from the datagram to the header to the flags, so a malformed message is named as such
    whatever its flags say; a warm-up is ignored even when it asks for a pong.
    """
    if len(datagram) > max_size:
        return None, Ignored.OVERSIZED
    header = sockperf_parse(datagram)
    if header is None:
        return None, Ignored.SHORT
    if header.length != len(datagram):
        return None, Ignored.BAD_LENGTH
    if not header.flags & SOCKPERF_CLIENT:
        return None, Ignored.NOT_CLIENT
    if header.flags & SOCKPERF_WARMUP:
        return None, Ignored.WARMUP
    if not header.flags & SOCKPERF_PONG_REQUEST:
        return None, Ignored.NO_PONG
    flags = header.flags & ~SOCKPERF_CLIENT  # the answer is the server's: CLIENT cleared
    return SOCKPERF_HEADER.pack(header.sequence, flags, header.length) + datagram[
        SOCKPERF_HEADER.size :
    ], None


def printable(text: str) -> str:
    """Escape control, format and unassigned characters (ANSI escapes, bidi overrides, NUL...).

    For showing received text on a terminal: a datagram from anyone on the network must not be
    able to move the cursor, recolour the screen or retitle the window.
    """
    return "".join(
        char.encode("unicode_escape").decode("ascii")
        if unicodedata.category(char).startswith("C")
        else char
        for char in text
    )
