"""The caller's audio, playback buffer and turn script, without sockets or clocks."""

from __future__ import annotations

import pytest

from actors.audio_codec import Encoding, MediaFormat, ulaw_to_pcm16
from devkit.emulator.conversation import SpeechStarted, UtteranceDetector, UtteranceEnded
from devkit.simcall import CallerTurns, CallerVoice, CallScript, Misbehaviour, PlaybackBuffer
from devkit.simcall.script import FRAME_S

ULAW = MediaFormat(Encoding.MULAW, 8000)
SLIN16 = MediaFormat(Encoding.PCM16, 16000)


def _pcm(fmt: MediaFormat, frame: bytes) -> bytes:
    return ulaw_to_pcm16(frame) if fmt.encoding is Encoding.MULAW else frame


def _detector(fmt: MediaFormat) -> UtteranceDetector:
    # The emulator's defaults: -40 dBFS, 0.1 s of speech, MEDIUM endpointing (1.75 s).
    return UtteranceDetector(
        sample_rate=fmt.sample_rate, pause=1.75, threshold_dbfs=-40.0, min_speech=0.1
    )


@pytest.mark.parametrize("fmt", [ULAW, SLIN16])
@pytest.mark.parametrize("seed", range(8))
def test_each_utterance_is_one_emulator_utterance(fmt: MediaFormat, seed: int) -> None:
    voice = CallerVoice(seed, fmt)
    detector = _detector(fmt)
    events: list[object] = []
    for index in range(3):
        for frame in voice.utterance_frames(index, 0.8 + 0.3 * index):
            assert len(frame) == voice.frame_bytes
            events += detector.feed(_pcm(fmt, frame))
        for frame in voice.noise_frames(index, 2.0):
            events += detector.feed(_pcm(fmt, frame))
    assert [type(e) for e in events] == [SpeechStarted, UtteranceEnded] * 3


@pytest.mark.parametrize("fmt", [ULAW, SLIN16])
def test_line_noise_is_never_speech(fmt: MediaFormat) -> None:
    detector = _detector(fmt)
    voice = CallerVoice(3, fmt)
    assert [e for f in voice.noise_frames(0, 5.0) for e in detector.feed(_pcm(fmt, f))] == []


def test_audio_is_deterministic_by_seed() -> None:
    assert CallerVoice(7, ULAW).utterance_frames(1, 1.0) == CallerVoice(7, ULAW).utterance_frames(
        1, 1.0
    )
    assert CallerVoice(7, ULAW).utterance_frames(1, 1.0) != CallerVoice(8, ULAW).utterance_frames(
        1, 1.0
    )


def test_playback_marks_clear_and_underruns() -> None:
    pb = PlaybackBuffer(response_gap=1.0)
    assert pb.add_mark(0.0, "idle") == ["idle"]  # nothing queued: echoed at once
    pb.add_audio(10.0, 0.1)
    assert pb.add_mark(10.0, "a") == []
    pb.add_audio(10.05, 0.1)  # arrives ahead of need: no underrun
    assert pb.add_mark(10.05, "b") == []
    assert pb.due_marks(10.099) == []
    assert pb.due_marks(10.1) == ["a"]
    assert pb.playing(10.15) and pb.queued_seconds(10.15) == pytest.approx(0.05)
    pb.add_audio(10.5, 0.1)  # buffer dry since 10.2: a 0.3 s gap the caller heard
    assert pb.underruns == 1 and pb.underrun_seconds == pytest.approx(0.3)
    assert pb.clear(10.55) == ["b"]
    assert not pb.playing(10.55)
    pb.add_audio(10.6, 0.1)  # after a clear: a new response, not an underrun
    pb.add_audio(12.0, 0.1)  # after response_gap: a new response too
    assert (pb.responses, pb.underruns) == (3, 1)
    assert pb.interarrivals == pytest.approx([0.05, 0.45])


def _run(script: CallScript, replies: dict[int, float], *, until: float) -> CallerTurns:
    """Drive the script at 20 ms ticks; reply to utterance k ``replies[k]`` s after its end
    with 1 s of audio (all at once), and clear 0.1 s after any barge-in."""
    voice = CallerVoice(1, ULAW)
    turns = CallerTurns(script, voice, seed=1, start=0.0)
    pb = PlaybackBuffer()
    pending: list[tuple[float, str]] = []
    k = 0
    while k * FRAME_S < until:
        now = k * FRAME_S
        for at, what in [p for p in pending if p[0] <= now + 1e-9]:
            pending.remove((at, what))
            if what == "audio":
                pb.add_audio(now, 1.0)
                turns.on_assistant_audio(now)
            else:
                pb.clear(now)
                turns.on_clear(now)
        ends, onsets = len(turns.utterance_ends), len(turns.barge_onsets)
        tick = turns.tick(now, pb)
        if tick.hangup:
            break
        if len(turns.utterance_ends) > ends and ends in replies:
            pending.append((now + replies[ends], "audio"))
        if len(turns.barge_onsets) > onsets:
            pending.append((now + 0.1, "clear"))
        k += 1
    turns.finish()
    return turns


def test_script_turns_latencies_and_barge_in() -> None:
    script = CallScript(length=None, max_turns=3, barge_in_turn=1, barge_in_delay=0.3)
    turns = _run(script, {0: 0.2, 1: 0.4, 2: 0.2}, until=30.0)
    assert turns.done and turns.turns == 3
    assert turns.reply_latencies == pytest.approx([0.2, 0.4, 0.2])
    assert turns.barge_onsets and turns.barge_reactions == pytest.approx([0.1])
    assert turns.barges_missed == 0 and turns.no_reply_turns == 0


def test_script_counts_missing_replies_and_hangs_up_at_length() -> None:
    script = CallScript(length=6.0, reply_timeout=2.0, barge_in_turn=0)
    turns = _run(script, {}, until=30.0)
    assert turns.done and turns.reply_latencies == []
    assert turns.no_reply_turns >= 1 and turns.barge_onsets == []


def test_silent_caller_never_speaks() -> None:
    script = CallScript(length=3.0, misbehaviour=Misbehaviour.SILENCE)
    turns = _run(script, {0: 0.2}, until=30.0)
    assert turns.turns == 0 and turns.utterance_ends == []
