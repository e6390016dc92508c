"""Utterance detection and turn planning alone (sans-IO), on synthetic PCM."""

from __future__ import annotations

import numpy as np
import pytest

from devkit.emulator.conversation import (
    Conversation,
    SpeechStarted,
    UtteranceDetector,
    UtteranceEnded,
)
from devkit.emulator.voice import synthesize

RATE = 16000


def tone(seconds: float, level: float = 0.3) -> bytes:
    t = np.arange(round(seconds * RATE)) / RATE
    wave = level * np.sin(2 * np.pi * 220 * t) * (1 + 0.3 * np.sin(2 * np.pi * 4 * t)) / 1.3
    return (wave * 32767).astype("<i2").tobytes()


def silence(seconds: float, noise: float = 0.001) -> bytes:
    rng = np.random.default_rng(1)
    return (rng.normal(0, noise, round(seconds * RATE)) * 32767).astype("<i2").tobytes()


def detector(pause: float = 0.5) -> UtteranceDetector:
    return UtteranceDetector(sample_rate=RATE, pause=pause, threshold_dbfs=-40, min_speech=0.1)


def feed_in_chunks(d: UtteranceDetector, pcm: bytes, chunk: int) -> list[object]:
    out: list[object] = []
    for i in range(0, len(pcm), chunk):
        out += d.feed(pcm[i : i + chunk])
    return out


@pytest.mark.parametrize("chunk_bytes", [1024, 640, 333 * 2, 64000])
def test_bursts_and_pauses_give_exact_turns(chunk_bytes: int) -> None:
    # speech 0.5-1.3 s, short gap 0.3 s (< pause, same utterance), speech 1.6-2.0 s,
    # long gap, speech 3.0-3.4 s, long silence.
    pcm = silence(0.5) + tone(0.8) + silence(0.3) + tone(0.4) + silence(1.0)
    pcm += tone(0.4) + silence(1.0)
    events = feed_in_chunks(detector(), pcm, chunk_bytes)
    assert events == [
        SpeechStarted(0.5),
        UtteranceEnded(0.5, 2.0),
        SpeechStarted(3.0),
        UtteranceEnded(3.0, 3.4),
    ]


def test_no_turn_until_the_pause_has_elapsed() -> None:
    d = detector(pause=1.75)
    assert d.feed(tone(1.0)) == [SpeechStarted(0.0)]
    assert d.feed(silence(1.7)) == []
    assert d.speaking
    assert d.feed(silence(0.1)) == [UtteranceEnded(0.0, 1.0)]
    assert not d.speaking


def test_clicks_shorter_than_min_speech_are_ignored() -> None:
    pcm = silence(0.2) + tone(0.05) + silence(0.5) + tone(0.05) + silence(2.0)
    assert detector().feed(pcm) == []


def test_quiet_audio_under_threshold_is_silence() -> None:
    assert detector().feed(tone(2.0, level=0.005) + silence(1.0)) == []


def test_synthetic_assistant_voice_counts_as_speech() -> None:
    pcm = synthesize(text="hello", voice_id="tiffany", sample_rate=RATE, seconds=1.0, seed=3)
    events = detector().feed(pcm + silence(1.0))
    assert events[0] == SpeechStarted(0.0)
    assert isinstance(events[-1], UtteranceEnded)


def test_voice_is_deterministic_and_sized() -> None:
    a = synthesize(text="x", voice_id="matthew", sample_rate=8000, seconds=0.5, seed=1)
    assert a == synthesize(text="x", voice_id="matthew", sample_rate=8000, seconds=0.5, seed=1)
    assert len(a) == 8000
    assert a != synthesize(text="x", voice_id="matthew", sample_rate=8000, seconds=0.5, seed=2)


def test_turn_plans_are_deterministic_per_seed_and_prompt() -> None:
    u = UtteranceEnded(0.0, 2.0)
    one = [Conversation(seed=7, system_prompt="p").plan_turn(u) for _ in range(2)]
    assert one[0] == one[1]
    other = Conversation(seed=8, system_prompt="p")
    plans = [other.plan_turn(u) for _ in range(3)]
    assert plans[0] != one[0]
    assert [p.number for p in plans] == [1, 2, 3]
    assert plans[0].input_speech_tokens == 50
