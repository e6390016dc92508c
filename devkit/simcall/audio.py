"""Deterministic speech-like caller audio: voiced syllables, word gaps, pauses.

Each utterance is a run of "syllables" (harmonic tones on a gliding fundamental, shaped by
a raised-cosine envelope at a syllable rate of about 4-5 per second) separated by short
word gaps. Its per-10 ms RMS sits ~20 dB above the emulator's speech threshold
(``speech_threshold_dbfs`` = -40 dBFS) for almost every frame of a syllable, and every gap
inside an utterance is far shorter than the shortest endpointing pause (1.5 s), so the
emulator hears exactly one utterance per :meth:`CallerVoice.utterance`. Everything is
drawn from a :class:`numpy.random.Generator` seeded by ``(seed, utterance index)``: the
same seed always gives the same bytes.

Audio is generated at the carrier's own rate (8 kHz for μ-law, 16 kHz for ``slin16``), so
nothing is resampled; μ-law encoding reuses :mod:`actors.audio_codec`'s tables.
"""

from __future__ import annotations

import attrs
import numpy as np
import numpy.typing as npt

from actors.audio_codec import Encoding, MediaFormat, pcm16_to_alaw, pcm16_to_ulaw, silence

FRAME_MS = 20
SPEECH_PEAK_DBFS = -10.0
"""Peak level of a syllable; its 10 ms RMS is then about -16 dBFS at the syllable's centre."""
NOISE_DBFS = -66.0
"""Line noise in pauses and from silent callers: well below the -40 dBFS speech threshold."""
MIN_SYLLABLE_S = 0.15
"""Long enough that one syllable alone lasts past the emulator's 0.1 s ``min_speech``."""

__all__ = [
    "FRAME_MS",
    "CallerVoice",
    "encode",
    "frame_rms_dbfs",
    "split_frames",
]


def _db(dbfs: float) -> float:
    return 32767.0 * 10 ** (dbfs / 20)


@attrs.frozen
class CallerVoice:
    """One simulated caller's voice: fundamental, syllable rate and loudness by seed."""

    seed: int
    fmt: MediaFormat

    def _rng(self, *salt: int) -> np.random.Generator:
        return np.random.default_rng([self.seed & 0xFFFFFFFF, *salt])

    @property
    def frame_bytes(self) -> int:
        """Bytes of one 20 ms frame in the carrier's encoding."""
        return self.fmt.bytes_for_ms(FRAME_MS)

    def utterance_pcm(self, index: int, seconds: float) -> npt.NDArray[np.int16]:
        """About ``seconds`` of speech as PCM16 samples: whole 20 ms frames, every one of them
        above the speech threshold at both ends (the last syllable is cut, not faded)."""
        rng = self._rng(1, index)
        rate = self.fmt.sample_rate
        f0 = float(self._rng(0).uniform(95.0, 230.0))  # the caller's voice, fixed per seed
        total = max(1, round(seconds * 1000 / FRAME_MS)) * rate * FRAME_MS // 1000
        out = np.zeros(total, dtype=np.float64)
        pos = end = 0
        while pos < total:
            syllable = int(rng.uniform(MIN_SYLLABLE_S, 0.26) * rate)
            syllable = min(syllable, total - pos)
            if syllable < MIN_SYLLABLE_S * rate / 2:
                break  # too short to be loud for a whole frame: end on the previous one
            t = np.arange(syllable) / rate
            glide = f0 * (1.0 + rng.uniform(-0.12, 0.12) * t / max(t[-1], 1e-3))
            phase = 2 * np.pi * np.cumsum(glide) / rate
            # Harmonics up to ~3.4 kHz (telephone band) with a -6 dB/octave-ish tilt.
            voice = np.zeros(syllable)
            for h in range(1, int(3400 // f0) + 1):
                voice += np.sin(h * phase + rng.uniform(0, 2 * np.pi)) / h
            arch = np.sin(np.pi * np.arange(syllable) / max(syllable - 1, 1))
            envelope = np.clip(arch, 0.0, 1.0) ** 0.6
            level = _db(SPEECH_PEAK_DBFS + rng.uniform(-4.0, 0.0))
            out[pos : pos + syllable] = voice / np.max(np.abs(voice)) * envelope * level
            pos += syllable
            end = pos
            if rng.random() < 0.35:  # a word boundary: a short gap, far below endpointing
                pos += int(rng.uniform(0.04, 0.14) * rate)
        # End on whole frames inside the last syllable, so the final frame is still speech
        # and "end of utterance" is the same instant for the caller and any listener.
        frame = rate * FRAME_MS // 1000
        total = max(frame, end // frame * frame)
        out = out[:total] + rng.normal(0.0, _db(NOISE_DBFS), total)
        return np.clip(np.rint(out), -32768, 32767).astype(np.int16)

    def noise_pcm(self, index: int, seconds: float) -> npt.NDArray[np.int16]:
        """Line noise (no speech) as PCM16: what a silent caller's line carries."""
        rate = self.fmt.sample_rate
        total = max(1, round(seconds * 1000 / FRAME_MS)) * rate * FRAME_MS // 1000
        noise = self._rng(2, index).normal(0.0, _db(NOISE_DBFS), total)
        return np.clip(np.rint(noise), -32768, 32767).astype(np.int16)

    def utterance_frames(self, index: int, seconds: float) -> list[bytes]:
        """:meth:`utterance_pcm` encoded and cut into 20 ms carrier frames."""
        return split_frames(encode(self.utterance_pcm(index, seconds), self.fmt), self.frame_bytes)

    def noise_frames(self, index: int, seconds: float) -> list[bytes]:
        """:meth:`noise_pcm` encoded and cut into 20 ms carrier frames."""
        return split_frames(encode(self.noise_pcm(index, seconds), self.fmt), self.frame_bytes)

    def silence_frame(self) -> bytes:
        """One 20 ms frame of the encoding's idle pattern."""
        return silence(self.fmt, FRAME_MS)


def encode(pcm: npt.NDArray[np.int16], fmt: MediaFormat) -> bytes:
    """PCM16 samples in ``fmt``'s wire encoding (μ-law/A-law by table, PCM16 little-endian)."""
    raw = pcm.astype("<i2").tobytes()
    if fmt.encoding is Encoding.MULAW:
        return pcm16_to_ulaw(raw)
    if fmt.encoding is Encoding.ALAW:
        return pcm16_to_alaw(raw)
    return raw


def split_frames(data: bytes, frame_bytes: int) -> list[bytes]:
    """``data`` cut into whole frames (the tail, if any, is dropped)."""
    whole = len(data) - len(data) % frame_bytes
    return [data[i : i + frame_bytes] for i in range(0, whole, frame_bytes)]


def frame_rms_dbfs(pcm: bytes) -> float:
    """RMS level of PCM16 little-endian audio in dBFS (-inf for digital silence)."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    if not samples.size:
        return float("-inf")
    rms = float(np.sqrt(np.mean(samples * samples)))
    return 20 * float(np.log10(rms / 32768.0)) if rms > 0 else float("-inf")
