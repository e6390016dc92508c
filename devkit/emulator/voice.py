"""Synthetic assistant speech: deterministic, speech-like PCM16 at any supported rate.

Not intelligible speech, but it has what telephony code cares about: a voiced harmonic
spectrum with formant peaks, syllable-rate amplitude modulation (about 4 Hz) and short
pauses between words, at a level around -16 dBFS. The same voice, text, seed and rate always
give the same bytes. Everything is vectorised with numpy; no per-sample Python loops.
"""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt

__all__ = ["CachedVoices", "pitch_of", "synthesize"]

# Rough vowel formants (F1, F2, F3 in Hz) cycled through syllables.
_VOWELS = np.array(
    [[730, 1090, 2440], [270, 2290, 3010], [530, 1840, 2480], [570, 840, 2410], [300, 870, 2240]],
    dtype=np.float64,
)
_FEMININE = frozenset({"tiffany", "amy", "olivia", "kiara", "ambre", "beatrice", "tina", "greta",
                       "lupe", "carolina"})  # fmt: skip
_SYLLABLE_SECONDS = 0.22


def pitch_of(voice_id: str) -> float:
    """Fundamental frequency (Hz) used for a voice: higher for the feminine voices."""
    return 205.0 if voice_id in _FEMININE else 115.0


def _stable_seed(*parts: object) -> int:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def synthesize(*, text: str, voice_id: str, sample_rate: int, seconds: float, seed: int) -> bytes:
    """PCM16LE mono of ``seconds`` of assistant speech for ``text`` in ``voice_id``."""
    n = max(0, round(seconds * sample_rate))
    if n == 0:
        return b""
    rng = np.random.default_rng(_stable_seed(seed, voice_id, text, sample_rate))
    t = np.arange(n, dtype=np.float64) / sample_rate
    f0 = pitch_of(voice_id) * (1.0 + 0.06 * np.sin(2 * np.pi * 0.7 * t))  # gentle intonation
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate

    syllable = np.minimum((t / _SYLLABLE_SECONDS).astype(np.int64), 10**6)
    n_syllables = int(syllable[-1]) + 1
    vowel_of = rng.integers(0, len(_VOWELS), size=n_syllables)

    nyquist = sample_rate / 2
    base = pitch_of(voice_id)
    n_harmonics = int(min(3400.0, nyquist * 0.9) // base)
    harmonics = np.arange(1, n_harmonics + 1, dtype=np.float64)
    # Formant-shaped gain of every harmonic in every syllable: (syllables, harmonics).
    formants = _VOWELS[vowel_of]
    gains = np.exp(-(((harmonics[None, :, None] * base - formants[:, None, :]) / 90.0) ** 2))
    gains = (gains.sum(axis=2) + 0.02) / np.sqrt(harmonics)[None, :]
    signal = np.zeros(n, dtype=np.float64)
    for k in range(n_harmonics):  # ~20-30 harmonics, each vectorised over all samples
        signal += gains[syllable, k] * np.sin((k + 1) * phase)

    # Syllable envelope (raised cosine) and word gaps (every 2-4 syllables).
    pos = (t % _SYLLABLE_SECONDS) / _SYLLABLE_SECONDS
    envelope = np.sin(np.pi * pos) ** 0.6
    gaps = rng.random(n_syllables) < 0.3
    envelope[gaps[syllable]] *= 0.05
    signal *= envelope
    signal += rng.normal(0.0, 0.01, size=n)  # breath noise keeps gaps from being digital zero

    peak = float(np.max(np.abs(signal))) or 1.0
    pcm: npt.NDArray[np.int16] = (signal / peak * 0.5 * 32767).astype("<i2")
    return pcm.tobytes()


class CachedVoices:
    """Per-emulator cache of synthesized replies (a fixed phrase list makes hits the norm).

    Owned by one emulator instance, bounded by ``max_entries`` (oldest dropped first).
    """

    def __init__(self, *, seed: int, max_entries: int = 256) -> None:
        self._seed = seed
        self._max = max_entries
        self._cache: dict[tuple[str, str, int, float], bytes] = {}

    def audio(self, *, text: str, voice_id: str, sample_rate: int, seconds: float) -> bytes:
        """PCM16LE of ``seconds`` of speech, synthesized once per distinct request."""
        key = (text, voice_id, sample_rate, seconds)
        pcm = self._cache.get(key)
        if pcm is None:
            pcm = synthesize(
                text=text,
                voice_id=voice_id,
                sample_rate=sample_rate,
                seconds=seconds,
                seed=self._seed,
            )
            if len(self._cache) >= self._max:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = pcm
        return pcm
