"""G.711 tables against ITU/reference points, round trips, rechunking and silence."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.audio_codec import (
    CarrierCodec,
    Encoding,
    MediaFormat,
    Rechunker,
    alaw_decode_table,
    alaw_to_pcm16,
    pcm16_to_alaw,
    pcm16_to_ulaw,
    silence,
    ulaw_decode_table,
    ulaw_encode_table,
    ulaw_to_pcm16,
)


def pcm(*samples: int) -> bytes:
    return np.array(samples, dtype="<i2").tobytes()


def samples_of(data: bytes) -> list[int]:
    return [int(x) for x in np.frombuffer(data, dtype="<i2")]


# Reference points of G.711 (the Sun/ITU g711.c tables, 16-bit scaled): code -> linear.
ULAW_POINTS = {
    0x00: -32124,
    0x01: -31100,
    0x0F: -16764,
    0x70: -120,
    0x7E: -8,
    0x7F: 0,
    0x80: 32124,
    0xEF: 132,
    0xFE: 8,
    0xFF: 0,
}
ALAW_POINTS = {0x00: -5504, 0x55: -8, 0xD5: 8, 0x2A: -32256, 0xAA: 32256, 0x80: 5504}


@pytest.mark.parametrize(("code", "linear"), sorted(ULAW_POINTS.items()))
def test_ulaw_decode_reference_points(code: int, linear: int) -> None:
    assert samples_of(ulaw_to_pcm16(bytes([code]))) == [linear]


@pytest.mark.parametrize(("code", "linear"), sorted(ALAW_POINTS.items()))
def test_alaw_decode_reference_points(code: int, linear: int) -> None:
    assert samples_of(alaw_to_pcm16(bytes([code]))) == [linear]


def test_ulaw_encode_reference_points() -> None:
    # Zero is 0xFF, full scale saturates to 0x80 / 0x00; -1..-4 share a 14-bit step with
    # -8 (arithmetic shift), so they land on 0x7E like audioop does.
    assert pcm16_to_ulaw(pcm(0, 32767, -32768, -1, 8, -8, 1)) == bytes(
        [0xFF, 0x80, 0x00, 0x7E, 0xFE, 0x7E, 0xFF]
    )


def test_alaw_encode_reference_points() -> None:
    assert pcm16_to_alaw(pcm(0, 32767, -32768, -1)) == bytes([0xD5, 0xAA, 0x2A, 0x55])


def test_every_code_round_trips_through_pcm() -> None:
    codes = bytes(range(256))
    # μ-law has two zeros (0x7F, 0xFF) that both decode to 0 and re-encode to 0xFF.
    back = pcm16_to_ulaw(ulaw_to_pcm16(codes))
    assert [c for c, b in zip(codes, back, strict=True) if c != b] == [0x7F]
    assert pcm16_to_alaw(alaw_to_pcm16(codes)) == codes


def test_tables_are_monotonic_and_read_only() -> None:
    dec = ulaw_decode_table().astype(int)
    assert all(np.diff(dec[0x80:0xFF][::-1]) >= 0)  # positive half, rising magnitude
    enc = ulaw_encode_table()
    with pytest.raises(ValueError):
        enc[0] = 1
    with pytest.raises(ValueError):
        alaw_decode_table()[0] = 1


@pytest.mark.parametrize(
    ("encode", "decode"), [(pcm16_to_ulaw, ulaw_to_pcm16), (pcm16_to_alaw, alaw_to_pcm16)]
)
def test_quantisation_error_is_bounded_for_every_sample(encode, decode) -> None:
    x = np.arange(-32768, 32768, dtype="<i2")
    y = np.frombuffer(decode(encode(x.tobytes())), dtype="<i2").astype(int)
    err = np.abs(x.astype(int) - y)
    # Logarithmic companding: the error grows with |x| but stays a small fraction of it.
    assert (err <= np.maximum(np.abs(x.astype(int)) // 8, 16)).all()
    assert err.max() < 1100


@pytest.mark.optional
def test_bit_exact_with_stdlib_audioop_when_available() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")
    every = np.arange(-32768, 32768, dtype="<i2").tobytes()
    assert pcm16_to_ulaw(every) == audioop.lin2ulaw(every, 2)
    assert pcm16_to_alaw(every) == audioop.lin2alaw(every, 2)
    assert ulaw_to_pcm16(bytes(range(256))) == audioop.ulaw2lin(bytes(range(256)), 2)
    assert alaw_to_pcm16(bytes(range(256))) == audioop.alaw2lin(bytes(range(256)), 2)


def test_odd_pcm_length_is_refused() -> None:
    with pytest.raises(ValueError):
        pcm16_to_ulaw(b"\x00\x00\x00")
    with pytest.raises(ValueError):
        CarrierCodec(MediaFormat(Encoding.PCM16, 16000)).decode(b"\x01")


def test_carrier_codec_per_encoding() -> None:
    ulaw = CarrierCodec(MediaFormat(Encoding.MULAW, 8000))
    assert ulaw.decode(b"\xff\x80") == pcm(0, 32124)
    assert ulaw.encode(pcm(0, 32124)) == b"\xff\x80"
    assert ulaw.pcm_format == MediaFormat(Encoding.PCM16, 8000)
    slin16 = CarrierCodec(MediaFormat(Encoding.PCM16, 16000))
    assert slin16.decode(pcm(1, -1)) == pcm(1, -1)
    assert slin16.encode(pcm(5)) == pcm(5)
    alaw = CarrierCodec(MediaFormat(Encoding.ALAW, 8000))
    assert alaw.encode(alaw.decode(b"\xd5\x2a")) == b"\xd5\x2a"


def test_silence_per_format() -> None:
    assert silence(MediaFormat(Encoding.MULAW, 8000), 20) == b"\xff" * 160
    assert silence(MediaFormat(Encoding.ALAW, 8000), 20) == b"\xd5" * 160
    assert silence(MediaFormat(Encoding.PCM16, 16000), 20) == bytes(640)
    assert samples_of(ulaw_to_pcm16(silence(MediaFormat(Encoding.MULAW, 8000), 10))) == [0] * 80


def test_media_format_sizes() -> None:
    assert MediaFormat(Encoding.PCM16, 8000).bytes_for_ms(32) == 512
    assert MediaFormat(Encoding.PCM16, 16000).bytes_for_ms(32) == 1024
    assert MediaFormat(Encoding.MULAW, 8000).bytes_for_ms(20) == 160


def test_rechunker_20ms_frames_into_32ms_chunks() -> None:
    r = Rechunker(512)  # 32 ms of PCM16 at 8 kHz
    frames = [bytes([i]) * 320 for i in range(8)]  # eight 20 ms frames = 160 ms
    out: list[bytes] = []
    for f in frames:
        out += r.push(f)
    assert [len(c) for c in out] == [512] * 5
    assert b"".join(out) == b"".join(frames)[: 5 * 512]
    assert r.pending == 0
    assert r.push(b"\x01" * 100) == []
    assert r.flush(b"\x00\x00") == b"\x01" * 100 + b"\x00" * 412
    assert r.pending == 0


def test_rechunker_clear_and_unpadded_flush() -> None:
    r = Rechunker(160)
    assert r.push(b"a" * 200) == [b"a" * 160]
    assert r.clear() == 40
    assert r.flush() == b""
    r.push(b"b" * 10)
    assert r.flush() == b"b" * 10
    with pytest.raises(ValueError):
        Rechunker(0)
    with pytest.raises(ValueError):
        Rechunker(161, align=2)


@given(st.lists(st.binary(max_size=700), max_size=30), st.integers(1, 1024))
def test_rechunker_preserves_every_byte_in_order(blocks: list[bytes], size: int) -> None:
    r = Rechunker(size)
    out: list[bytes] = []
    for b in blocks:
        out += r.push(b)
    assert all(len(c) == size for c in out)
    assert b"".join(out) + r.flush() == b"".join(blocks)


@given(st.binary(max_size=1000))
def test_decoding_any_payload_is_the_table_lookup_of_each_byte(payload: bytes) -> None:
    codes = np.frombuffer(payload, dtype=np.uint8)
    assert ulaw_to_pcm16(payload) == ulaw_decode_table()[codes].astype("<i2").tobytes()
    assert alaw_to_pcm16(payload) == alaw_decode_table()[codes].astype("<i2").tobytes()
