"""Pure units: address parsing, framing, MACs."""

from __future__ import annotations

import struct

import msgpack
import pytest

from transports import DEFAULT_MAX_FRAME_SIZE, FrameError, FrameTooLargeError, parse_address
from transports.address import split_host_port
from transports.auth import client_mac, server_mac
from transports.framing import Encoder, FrameDecoder

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("tcp://127.0.0.1:5000", ("tcp", "127.0.0.1:5000")),
        ("TCP://h:1", ("tcp", "h:1")),
        ("unix:///tmp/x.sock", ("unix", "/tmp/x.sock")),
        ("inproc://name", ("inproc", "name")),
        ("inproc://", ("inproc", "")),
    ],
)
def test_parse_address(address: str, expected: tuple[str, str]) -> None:
    assert parse_address(address) == expected


@pytest.mark.parametrize("junk", ["", "127.0.0.1:5000", "tcp:/x", "://x", "t cp://x", "1tcp://x"])
def test_parse_address_rejects_junk(junk: str) -> None:
    with pytest.raises(ValueError, match="address"):
        parse_address(junk)


def test_parse_address_rejects_non_str() -> None:
    with pytest.raises(TypeError):
        parse_address(5000)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("location", "expected"),
    [("127.0.0.1:80", ("127.0.0.1", 80)), ("[::1]:0", ("::1", 0)), ("host:65535", ("host", 65535))],
)
def test_split_host_port(location: str, expected: tuple[str, int]) -> None:
    assert split_host_port("x", location) == expected


@pytest.mark.parametrize("location", ["127.0.0.1", ":80", "h:port", "h:70000", "::1:80", "[::1]80"])
def test_split_host_port_rejects(location: str) -> None:
    with pytest.raises(ValueError, match="malformed address"):
        split_host_port("tcp://" + location, location)


def frame(msg: object) -> bytes:
    return b"".join(Encoder().encode(msg))


def test_default_max_frame_size() -> None:
    assert DEFAULT_MAX_FRAME_SIZE == 512 * 1024 * 1024


def test_encoder_wire_format() -> None:
    body = msgpack.packb(["a", b"b", 1], use_bin_type=True)
    assert frame(("a", b"b", 1)) == struct.pack(">I", len(body)) + body


def test_encoder_errors() -> None:
    enc = Encoder(max_frame_size=10)
    with pytest.raises(TypeError, match="complex"):
        enc.encode(1j)
    with pytest.raises(TypeError):
        enc.encode(2**70)
    with pytest.raises(FrameTooLargeError, match="max_frame_size=10"):
        enc.encode(b"x" * 20)
    # The packer is still clean after failures.
    assert b"".join(enc.encode([1])) == struct.pack(">I", 2) + b"\x91\x01"
    with pytest.raises(ValueError):
        Encoder(max_frame_size=0)


def test_decoder_byte_by_byte() -> None:
    data = b"".join(frame(m) for m in [1, "two", [3], {"4": b"4"}])
    dec = FrameDecoder()
    out = []
    for i in range(len(data)):
        out += dec.feed(data[i : i + 1])
    assert out == [1, "two", [3], {"4": b"4"}]
    assert dec.buffered == 0 and dec.error is None


def test_decoder_large_frame_in_chunks_then_more() -> None:
    big = bytes(range(256)) * 40_000  # ~10 MB
    data = frame(big) + frame("next")
    dec = FrameDecoder()
    out = []
    for i in range(0, len(data), 65536):
        out += dec.feed(data[i : i + 65536])
    assert out == [big, "next"]


def test_decoder_compacts_after_many_frames() -> None:
    dec = FrameDecoder()
    one = frame(b"p" * 1000)
    # Always leave a partial frame behind so the buffer is never simply cleared.
    stream = one * 1000
    out = []
    for i in range(0, len(stream), 7777):
        out += dec.feed(stream[i : i + 7777])
        assert dec.buffered < len(one) + 7777
    assert len(out) == 1000 and dec._pos < 300_000


def test_decoder_rejects_oversized_header_without_waiting_for_body() -> None:
    dec = FrameDecoder(max_frame_size=1 << 20)
    out = dec.feed(frame("ok") + struct.pack(">I", 0xFFFFFFFF))
    assert out == ["ok"]
    assert isinstance(dec.error, FrameTooLargeError)
    assert dec.feed(frame("ignored")) == []  # refuses input once broken


def test_decoder_rejects_bad_msgpack() -> None:
    dec = FrameDecoder()
    # Trailing bytes inside a frame are as malformed as an unknown type byte.
    out = dec.feed(frame(1) + struct.pack(">I", 2) + b"\x01\x02")
    assert out == [1]
    assert type(dec.error) is FrameError


def test_macs_bind_role_and_nonces() -> None:
    a, b = b"a" * 32, b"b" * 32
    assert client_mac(b"t", a, b) == client_mac(b"t", a, b)
    assert client_mac(b"t", a, b) != server_mac(b"t", b, a)  # a reflected proof is useless
    assert client_mac(b"t", a, b) != client_mac(b"u", a, b)
    assert client_mac(b"t", a, b) != client_mac(b"t", b, a)
    assert len(client_mac(b"t", a, b)) == 32
