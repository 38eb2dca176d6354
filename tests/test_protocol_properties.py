"""Property-based: whatever bytes arrive, the contract answers, and never raises."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from servers.__main__ import MAX_UDP_PAYLOAD
from servers.protocol import (
    DEFAULT_MAX_SIZE,
    DEFAULT_PREFIX,
    Answer,
    ErrorKind,
    WorkLimits,
    answer,
    error_reply,
    respond,
)
from servers.work import Work, calibrate, parse

ERROR_REPLY_MOST = 64


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=MAX_UDP_PAYLOAD))
def test_any_datagram_gets_its_echo_or_a_short_error(datagram):
    reply, kind = respond(datagram)
    if kind is None:
        codec = "utf-8"
        try:
            text = datagram.decode(codec)
        except UnicodeDecodeError:
            codec, text = "gbk", datagram.decode("gbk")
        assert reply == (DEFAULT_PREFIX + text).encode(codec)
    else:
        assert reply == error_reply(kind) and len(reply) <= ERROR_REPLY_MOST
        assert kind is not ErrorKind.TOO_LARGE or len(datagram) > DEFAULT_MAX_SIZE


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300), st.sampled_from(["utf-8", "gbk"]))
def test_text_in_either_codec_comes_back_whole(text, codec):
    try:
        datagram = text.encode(codec)
    except UnicodeEncodeError:
        return  # GBK cannot spell it: no such client
    reply, kind = respond(datagram)
    if not datagram:
        assert kind is ErrorKind.EMPTY
    elif len(datagram) <= DEFAULT_MAX_SIZE:
        # Some GBK bytes are valid UTF-8 and are answered in UTF-8 (the wire names no codec),
        # but either way the text decodes and encodes back to the very bytes sent.
        assert kind is None and reply.endswith(datagram)
        prefix = reply[: len(reply) - len(datagram)]
        assert prefix in (DEFAULT_PREFIX.encode("utf-8"), DEFAULT_PREFIX.encode("gbk"))


# -- work chosen by the request: ``@SPEC TEXT`` with --work-from-request ------------------------

RATE = 10_000_000.0  # iterations a second: a made-up calibration, so the caps are exact
LIMITS = WorkLimits(cpu_s=0.1, wait_s=1.0, iterations_per_s=RATE)
# Terms as --work spells them, some within the caps and some past them.
cpu_terms = st.one_of(
    st.integers(1, 2_000_000).map(lambda n: f"cpu={n}it"),
    st.integers(1, 300).map(lambda n: f"cpu={n}ms"),
)
wait_terms = st.tuples(st.sampled_from(["io", "block"]), st.integers(1, 1500)).map(
    lambda term: f"{term[0]}={term[1]}ms"
)
specs = st.lists(st.one_of(cpu_terms, wait_terms), min_size=1, max_size=3).map(",".join)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=MAX_UDP_PAYLOAD))
def test_without_the_option_an_at_sign_is_text_like_any_other(datagram):
    reply, kind = respond(datagram)
    assert answer(datagram) == Answer(reply, kind, None)
    assert answer(b"@" + datagram[: DEFAULT_MAX_SIZE - 1]).work is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=MAX_UDP_PAYLOAD))
def test_with_the_option_any_datagram_gets_an_answer_within_the_caps(datagram):
    for sent in (datagram, b"@" + datagram):
        got = answer(sent, limits=LIMITS)
        if got.kind is not None:
            assert got.reply == error_reply(got.kind, DEFAULT_MAX_SIZE, LIMITS)
            assert len(got.reply) <= ERROR_REPLY_MOST and got.work is None
        elif got.work is not None:
            assert got.work.cpu_iterations / RATE <= LIMITS.cpu_s
            assert got.work.io_seconds + got.work.block_seconds <= LIMITS.wait_s
        else:  # not asking: answered as without the option
            assert not sent.startswith(b"@") and got == answer(sent)


@settings(max_examples=300, deadline=None)
@given(specs, st.text(max_size=100), st.sampled_from(["utf-8", "gbk"]))
def test_a_spec_gets_its_work_and_the_text_its_echo_or_an_error_past_the_caps(spec, text, codec):
    try:
        parse(spec)
    except ValueError:
        assume(False)  # a term given twice: not a spec --work takes either
    try:
        datagram = f"@{spec} {text}".encode(codec)
    except UnicodeEncodeError:
        return
    assume(len(datagram) <= DEFAULT_MAX_SIZE)
    asked = calibrate(parse(spec), RATE)
    over = (
        asked.cpu_iterations / RATE > LIMITS.cpu_s
        or asked.io_seconds + asked.block_seconds > LIMITS.wait_s
    )
    got = answer(datagram, limits=LIMITS)
    if over:
        assert got.kind is ErrorKind.OVER_CAP and got.work is None
        return
    assert got.kind is None and got.work == asked
    try:  # the text comes back in the codec the whole datagram was read as: UTF-8 first
        datagram.decode("utf-8")
        used = "utf-8"
    except UnicodeDecodeError:
        used = "gbk"
    echoed = datagram.decode(used).partition(" ")[2]
    assert got.reply == (DEFAULT_PREFIX + echoed).encode(used)


def test_a_spec_that_does_not_parse_is_bad_work_and_a_huge_one_over_the_cap():
    assert answer(b"@cpu=fast x", limits=LIMITS).kind is ErrorKind.BAD_WORK
    assert answer(b"@cpu=100000ms x", limits=LIMITS).kind is ErrorKind.OVER_CAP
    assert answer(b"@cpu=1ms x", limits=WorkLimits()).kind is ErrorKind.OVER_CAP  # no speed
    assert answer("@io=5ms 你好".encode("gbk"), limits=LIMITS) == Answer(
        (DEFAULT_PREFIX + "你好").encode("gbk"), None, Work(io_seconds=0.005)
    )
