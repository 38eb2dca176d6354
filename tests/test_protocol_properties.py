"""Property-based: whatever bytes arrive, the contract answers, and never raises."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from servers.__main__ import MAX_UDP_PAYLOAD
from servers.protocol import DEFAULT_MAX_SIZE, DEFAULT_PREFIX, ErrorKind, error_reply, respond

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
