"""The judge's wire format: values round-trip as exact builtins; hostile bytes are refused in bounds."""

from __future__ import annotations

import math
import struct
import time
from collections import Counter, OrderedDict, defaultdict, deque, namedtuple

import pytest
from r1rl.rewards.sandbox.channel import MAX_DEPTH, MAX_HASHED, DecodeError, Decoder, EncodeError, Encoder


def roundtrip(value, **kw):
    return Decoder(Encoder(1 << 20, **kw).encode(value)).decode()


def u32(n: int) -> bytes:
    return struct.pack("<I", n)


def test_plain_values_round_trip_with_their_types():
    values = [
        None, True, False, 0, -1, 2**200, -(2**200), 1.5, -0.0, math.inf, 1 + 2j, "", "héllo\udc80",
        b"\x00b", bytearray(b"ab"), range(1, 10, 3), [1, [2, (3,)]], (), {1: {"a": [None]}}, {1, (2, 3)},
        frozenset({"x"}), Counter("aab"), OrderedDict(b=1, a=2), deque([1, 2], maxlen=3),
        defaultdict(list, {"k": [1]}),
    ]  # fmt: skip
    for v in values:
        back = roundtrip(v)
        assert type(back) is type(v) and back == v, (v, back)
    assert list(roundtrip(OrderedDict(b=1, a=2))) == ["b", "a"]
    assert roundtrip(deque([1], maxlen=3)).maxlen == 3
    assert roundtrip(defaultdict(list))["new"] == []


def test_nan_stays_nan_and_identity_does_not_travel():
    nan = float("nan")
    back = roundtrip([nan, nan])
    assert math.isnan(back[0]) and back[0] is not nan
    assert roundtrip([nan]) != [nan]  # as in IEEE 754; [nan] == [nan] holds only for one object


def test_subclasses_travel_as_their_base_unless_they_change_comparison():
    P = namedtuple("P", "x y")

    class Plain(list):
        pass

    class Liar(list):
        __eq__ = lambda self, other: True

    back = roundtrip(P(1, 2))
    assert back == (1, 2) and back.y == 2 and type(back).__name__ == "P" and type(back) is not P
    assert type(roundtrip(Plain([1]))) is list
    with pytest.raises(EncodeError, match="is not data"):
        roundtrip(Liar())  # without a handle maker, an object is refused
    assert roundtrip(defaultdict(lambda: 0, a=1)).default_factory is None  # not a builtin factory


def test_objects_become_handles_and_code_is_refused_when_asked():
    made = []

    def other(obj):
        made.append(obj)
        return len(made) - 1, 7

    handles = []
    data = Encoder(1 << 20, other).encode([object(), object()])
    assert data == b"L" + u32(2) + b"".join(b"H" + struct.pack("<qq", i, 7) for i in (0, 1))
    Decoder(data, lambda *h: handles.append(h) or h).decode()
    assert handles == [(0, 7), (1, 7)]  # two numbers: no kind, module or name travels
    for code in (print, len, lambda: 1, int, math):
        with pytest.raises(EncodeError, match="is not data"):
            Encoder(1 << 20, other, refuse_code=True).encode([code])


def test_encoder_stops_at_the_size_and_depth_caps():
    with pytest.raises(EncodeError, match="larger than 1000 bytes"):
        Encoder(1000).encode("x" * 2000)
    loop: list = []
    loop.append(loop)
    with pytest.raises(EncodeError, match="deeper than"):
        Encoder(1 << 20).encode(loop)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "truncated"),
        (b"Q", "truncated"),
        (b"X", "unknown tag"),
        (b"H" + bytes(16), "unknown tag"),  # no handle maker: handles are not accepted
        (b"NN", "trailing bytes"),
        (b"L" + u32(10**9), "larger than the frame"),  # no pre-allocation from a claimed length
        (b"S" + u32(3) + b"\xff\xfe", "larger than the frame"),
        (b"S" + u32(2) + b"\xff\xfe", "can't decode"),
        ((b"L" + u32(1)) * (MAX_DEPTH + 2) + b"N", "deeper than"),
        ((b"L" + u32(1)) * 100_000 + b"N", "deeper than"),
        (b"E" + u32(1) + b"L" + u32(0), "unhashable"),
        (b"P" + u32(1) + b"P" + u32(1) + u32(5) + b"class" + u32(1) + b"N", "ValueError"),
        # two field names that Python reads as one identifier (NFKC): namedtuple() raises SyntaxError
        (b"P" + u32(1) + b"P" + u32(2) + u32(3) + "ﬁ".encode() + u32(2) + b"fi" + u32(2) + b"NN", "Syntax"),
    ],
)
def test_decoder_refuses_malformed_bytes(data, message):
    with pytest.raises(DecodeError, match=message):
        Decoder(data).decode()


def test_decoder_caps_hashed_items_so_colliding_ints_cannot_stall_it():
    m = (1 << 61) - 1  # CPython hashes an int modulo 2**61 - 1: these all collide
    items = b"".join(b"I" + u32(16) + (m * i).to_bytes(16, "little") for i in range(1, 20_001))
    start = time.monotonic()
    with pytest.raises(DecodeError, match=f"more than {MAX_HASHED}"):
        Decoder(b"E" + u32(20_000) + items).decode()
    under = b"E" + u32(MAX_HASHED) + items[: MAX_HASHED * 21]
    assert len(Decoder(under).decode()) == MAX_HASHED  # the worst case the cap allows
    assert time.monotonic() - start < 2.0
