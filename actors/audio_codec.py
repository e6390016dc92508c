"""G.711 (μ-law, A-law) ↔ PCM16 by table lookup, fixed-size rechunking, comfort silence.

Sans-IO and numpy only. PCM16 is always signed 16-bit little-endian mono, the layout of
Nova Sonic's ``audio/lpcm`` and of Asterisk's ``slin``/``slin16`` on every platform the
daemon runs on.

The tables reproduce the G.711 companding used by CPython's ``audioop`` (and by the Sun
reference ``g711.c`` it derives from) bit for bit: μ-law works on the top 14 bits (clip at
8159, bias 0x21, codes inverted), A-law on the top 13 bits (even bits inverted, 0x55).
``audioop`` itself is deprecated and gone in Python 3.13, so it is never imported here.

No resampler lives here on purpose: Nova Sonic takes and produces 8 kHz and 16 kHz LPCM
(``reference/nova-sonic.md`` §3.8), and every carrier format we accept is 8 kHz G.711,
8 kHz ``slin`` or 16 kHz ``slin16``, so the bridge never changes rate. A carrier that
announces any other rate is refused by its dialect.
"""

from __future__ import annotations

import enum
import functools

import attrs
import numpy as np
import numpy.typing as npt

_PCM = np.dtype("<i2")

ULAW_SILENCE = 0xFF
"""μ-law code of digital zero (positive zero)."""
ALAW_SILENCE = 0xD5
"""A-law code of the smallest positive value (+8), the customary A-law idle pattern."""


class Encoding(enum.Enum):
    """How audio bytes are encoded on the carrier's wire."""

    MULAW = "mulaw"
    ALAW = "alaw"
    PCM16 = "pcm16"


@attrs.frozen
class MediaFormat:
    """A mono audio format: encoding and sample rate in Hz."""

    encoding: Encoding
    sample_rate: int

    @property
    def bytes_per_sample(self) -> int:
        """1 for G.711, 2 for PCM16."""
        return 2 if self.encoding is Encoding.PCM16 else 1

    def bytes_for_ms(self, ms: int) -> int:
        """Bytes of ``ms`` milliseconds of audio in this format (whole samples)."""
        return self.sample_rate * ms // 1000 * self.bytes_per_sample

    @property
    def pcm_bytes_per_ms(self) -> float:
        """Bytes per millisecond once decoded to PCM16 at the same rate."""
        return self.sample_rate * 2 / 1000


# --- tables ------------------------------------------------------------------------------
#
# Built on first use by lru_cache'd functions (one per process, not module-level state
# that anyone can mutate): the arrays are marked read-only before they are shared.

_ULAW_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], np.int32)
_ALAW_SEG_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], np.int32)


def _frozen(a: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    a.setflags(write=False)
    return a


@functools.lru_cache(maxsize=1)
def ulaw_decode_table() -> npt.NDArray[np.int16]:
    """The 256-entry μ-law → PCM16 table (read-only)."""
    u = (~np.arange(256, dtype=np.int32)) & 0xFF
    t = ((u & 0x0F) << 3) + 0x84
    t <<= (u & 0x70) >> 4
    out = np.where(u & 0x80, 0x84 - t, t - 0x84).astype(_PCM)
    return _frozen(out)  # type: ignore[return-value]


@functools.lru_cache(maxsize=1)
def ulaw_encode_table() -> npt.NDArray[np.uint8]:
    """The 65,536-entry PCM16 → μ-law table, indexed by the sample viewed as uint16."""
    pcm = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32) >> 2
    negative = pcm < 0
    mag = np.minimum(np.where(negative, -pcm, pcm), 8159) + 0x21
    seg = np.searchsorted(_ULAW_SEG_END, mag)  # first segment whose end >= mag
    # A clipped magnitude (8159 + 0x21) falls past the last segment: saturate to 0x7F.
    code = np.where(seg >= 8, 0x7F, (np.minimum(seg, 7) << 4) | ((mag >> (seg + 1)) & 0x0F))
    mask = np.where(negative, 0x7F, 0xFF)
    return _frozen((code ^ mask).astype(np.uint8))  # type: ignore[return-value]


@functools.lru_cache(maxsize=1)
def alaw_decode_table() -> npt.NDArray[np.int16]:
    """The 256-entry A-law → PCM16 table (read-only)."""
    a = np.arange(256, dtype=np.int32) ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, t + 8, t + 0x108)
    t = np.where(seg > 1, t << np.maximum(seg - 1, 0), t)
    return _frozen(np.where(a & 0x80, t, -t).astype(_PCM))  # type: ignore[return-value]


@functools.lru_cache(maxsize=1)
def alaw_encode_table() -> npt.NDArray[np.uint8]:
    """The 65,536-entry PCM16 → A-law table, indexed by the sample viewed as uint16."""
    pcm = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32) >> 3
    negative = pcm < 0
    mag = np.where(negative, -pcm - 1, pcm)
    mask = np.where(negative, 0x55, 0xD5)
    seg = np.searchsorted(_ALAW_SEG_END, mag)
    quant = np.where(seg < 2, mag >> 1, mag >> np.maximum(seg, 1)) & 0x0F
    code = np.where(seg >= 8, 0x7F, (np.minimum(seg, 7) << 4) | quant)
    return _frozen((code ^ mask).astype(np.uint8))  # type: ignore[return-value]


# --- conversions -------------------------------------------------------------------------


def _pcm_view(pcm: bytes) -> npt.NDArray[np.uint16]:
    if len(pcm) % 2:
        raise ValueError(f"PCM16 needs an even number of bytes, got {len(pcm)}")
    # Little-endian uint16 view: the sample's bit pattern, the encode tables' index.
    return np.frombuffer(pcm, dtype="<u2")


@functools.lru_cache(maxsize=2)
def _decode_halves(table: str) -> tuple[bytes, bytes]:
    """``bytes.translate`` tables giving the low and the high byte of each decoded sample."""
    pcm = (ulaw_decode_table() if table == "ulaw" else alaw_decode_table()).astype("<i2")
    raw = pcm.tobytes()
    return raw[0::2], raw[1::2]


def _decode(payload: bytes, table: str) -> bytes:
    # Two C-level translates into the even and odd bytes: about 2x cheaper than numpy's
    # frombuffer + fancy indexing + tobytes on a 160-byte carrier frame (issue 13).
    low, high = _decode_halves(table)
    out = bytearray(2 * len(payload))
    out[0::2] = payload.translate(low)
    out[1::2] = payload.translate(high)
    return bytes(out)


def ulaw_to_pcm16(payload: bytes) -> bytes:
    """Decode μ-law bytes to PCM16 little-endian."""
    return _decode(payload, "ulaw")


def pcm16_to_ulaw(pcm: bytes) -> bytes:
    """Encode PCM16 little-endian to μ-law. Raises ``ValueError`` on an odd length."""
    return ulaw_encode_table()[_pcm_view(pcm)].tobytes()


def alaw_to_pcm16(payload: bytes) -> bytes:
    """Decode A-law bytes to PCM16 little-endian."""
    return _decode(payload, "alaw")


def pcm16_to_alaw(pcm: bytes) -> bytes:
    """Encode PCM16 little-endian to A-law. Raises ``ValueError`` on an odd length."""
    return alaw_encode_table()[_pcm_view(pcm)].tobytes()


def silence(fmt: MediaFormat, ms: int) -> bytes:
    """``ms`` milliseconds of comfort silence in ``fmt`` (the encoding's idle pattern).

    Digital silence is what keeps Nova Sonic's input stream alive while the caller says
    nothing; Sonic does its own voice-activity detection, so no comfort noise is added.
    """
    n = fmt.bytes_for_ms(ms)
    if fmt.encoding is Encoding.MULAW:
        return bytes([ULAW_SILENCE]) * n
    if fmt.encoding is Encoding.ALAW:
        return bytes([ALAW_SILENCE]) * n
    return bytes(n)


@attrs.frozen
class CarrierCodec:
    """Converts between one carrier wire format and PCM16 at the same sample rate."""

    wire: MediaFormat

    @property
    def pcm_format(self) -> MediaFormat:
        """The PCM16 format the wire format decodes to."""
        return MediaFormat(Encoding.PCM16, self.wire.sample_rate)

    def decode(self, payload: bytes) -> bytes:
        """Carrier bytes → PCM16 little-endian."""
        if self.wire.encoding is Encoding.MULAW:
            return ulaw_to_pcm16(payload)
        if self.wire.encoding is Encoding.ALAW:
            return alaw_to_pcm16(payload)
        if len(payload) % 2:
            raise ValueError(f"PCM16 needs an even number of bytes, got {len(payload)}")
        return payload

    def encode(self, pcm: bytes) -> bytes:
        """PCM16 little-endian → carrier bytes."""
        if self.wire.encoding is Encoding.MULAW:
            return pcm16_to_ulaw(pcm)
        if self.wire.encoding is Encoding.ALAW:
            return pcm16_to_alaw(pcm)
        if len(pcm) % 2:
            raise ValueError(f"PCM16 needs an even number of bytes, got {len(pcm)}")
        return pcm


class Rechunker:
    """Turns a stream of byte blocks of any size into blocks of exactly ``chunk_bytes``.

    Used both ways: 20 ms carrier frames → ~32 ms Sonic ``audioInput`` chunks, and Sonic's
    audio output → carrier-sized frames. ``pending`` bytes (always < ``chunk_bytes``)
    wait for the next :meth:`push`; :meth:`flush` pads them out, :meth:`clear` drops
    them (barge-in).
    """

    def __init__(self, chunk_bytes: int, *, align: int = 1) -> None:
        if chunk_bytes <= 0 or chunk_bytes % align:
            raise ValueError(f"chunk_bytes={chunk_bytes} must be a positive multiple of {align}")
        self.chunk_bytes = chunk_bytes
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held back waiting for a full chunk."""
        return len(self._buf)

    def push(self, data: bytes) -> list[bytes]:
        """Add ``data``; return every full chunk now available, in order."""
        size = self.chunk_bytes
        if not self._buf and len(data) == size:  # the common steady-state case
            return [bytes(data)]
        self._buf += data
        full = len(self._buf) - len(self._buf) % size
        if not full:
            return []
        out = [bytes(self._buf[i : i + size]) for i in range(0, full, size)]
        del self._buf[:full]
        return out

    def flush(self, pad: bytes | None = None) -> bytes:
        """Return what is pending (possibly empty), padded to a full chunk with ``pad``.

        ``pad`` is one silence unit (``b"\\x00\\x00"`` for PCM16, ``b"\\xff"`` for μ-law);
        ``None`` returns the short remainder as it is.
        """
        rest = bytes(self._buf)
        self._buf.clear()
        if not rest or pad is None:
            return rest
        missing = self.chunk_bytes - len(rest)
        return rest + pad * (missing // len(pad))

    def clear(self) -> int:
        """Drop what is pending; return how many bytes were dropped."""
        dropped = len(self._buf)
        self._buf.clear()
        return dropped
