"""The echo-and-reply contract as pure functions."""

from __future__ import annotations

import pytest

from servers.protocol import (
    DEFAULT_PREFIX,
    ErrorKind,
    Rejected,
    Request,
    decode,
    encode_reply,
    error_reply,
    respond,
)


@pytest.mark.parametrize("codec", ["utf-8", "gbk"])
def test_reply_is_prefix_plus_text_in_the_request_codec(codec):
    text = "你好，世界 hello"
    reply, kind = respond(text.encode(codec))
    assert kind is None
    assert reply == (DEFAULT_PREFIX + text).encode(codec)


def test_utf8_is_tried_before_gbk():
    assert decode("ascii and 中文".encode()) == Request("ascii and 中文", "utf-8")
    assert decode("中文汉字".encode("gbk")) == Request("中文汉字", "gbk")


def test_gbk_bytes_that_are_also_valid_utf8_are_read_as_utf8():
    """The documented ambiguity: GBK "专业" happens to be valid UTF-8 ("רҵ")."""
    ambiguous = "专业".encode("gbk")
    assert decode(ambiguous) == Request("רҵ", "utf-8")


def test_empty_datagram():
    assert decode(b"") == Rejected(ErrorKind.EMPTY, b"error: empty datagram")


@pytest.mark.parametrize("max_size", [1, 100, 1024])
def test_size_limit_is_exact(max_size):
    assert isinstance(decode(b"a" * max_size, max_size), Request)
    rejected = decode(b"a" * (max_size + 1), max_size)
    assert rejected == Rejected(
        ErrorKind.TOO_LARGE, f"error: datagram larger than {max_size} bytes".encode()
    )


def test_neither_utf8_nor_gbk():
    rejected = decode(b"\xff\xff\xff")
    assert isinstance(rejected, Rejected) and rejected.kind is ErrorKind.UNDECODABLE
    assert rejected.reply == b"error: datagram is neither utf-8 nor gbk"


@pytest.mark.parametrize("kind", list(ErrorKind))
@pytest.mark.parametrize("max_size", [1, 1024, 65507])
def test_error_replies_are_short_ascii(kind, max_size):
    reply = error_reply(kind, max_size)
    assert reply.startswith(b"error: ")
    assert len(reply) <= 64
    reply.decode("ascii")


def test_a_prefix_the_codec_cannot_spell_is_replaced_not_fatal():
    assert encode_reply(Request("好", "gbk"), "🔊") == "?好".encode("gbk")
    assert encode_reply(Request("好", "utf-8"), "🔊") == "🔊好".encode()


def test_whole_maximum_datagram_is_echoed_untruncated():
    text = "汉" * (1024 // 3)  # 1022 bytes of UTF-8
    reply, kind = respond(text.encode())
    assert kind is None and reply.decode() == DEFAULT_PREFIX + text
