"""Turn-taking of the simulated conversation (sans-IO): utterance detection and turn plans.

:class:`UtteranceDetector` reads the caller's PCM and reports, in *audio time* (seconds of
audio received), when speech starts and when an utterance ends, i.e. once speech was
followed by the endpointing pause of silence. Energy is computed per 10 ms frame with numpy;
the Python-level work is per frame only where a chunk mixes speech and silence.

:class:`Conversation` turns detected utterances into deterministic turn plans (what the
"caller said", what the assistant replies, ids, token counts), drawn from fixed phrase lists
by an RNG seeded from the emulator seed and the system prompt.
"""

from __future__ import annotations

import hashlib
import random
import uuid

import attrs
import numpy as np

__all__ = [
    "ASSISTANT_PHRASES",
    "USER_PHRASES",
    "Conversation",
    "SpeechStarted",
    "TurnPlan",
    "UtteranceDetector",
    "UtteranceEnded",
]

USER_PHRASES = (
    "Hi, I'd like to check the status of my order.",
    "Can you tell me your opening hours?",
    "I need to change my delivery address.",
    "What is the balance on my account?",
    "I want to speak about a refund.",
    "Is there anyone who can help me with my booking?",
    "Yes, that's right.",
    "No, that's not what I meant.",
)
ASSISTANT_PHRASES = (
    "Of course. Could you give me your order number, please?",
    "We're open from nine in the morning until six in the evening, Monday to Saturday.",
    "I can help with that. What is the new address?",
    "Let me look that up for you. One moment, please.",
    "I'm sorry to hear that. Could you tell me what went wrong?",
    "Certainly. Which booking would you like to talk about?",
    "Great, thank you. Is there anything else I can do for you?",
    "Thanks for clarifying. Let me try again.",
)


@attrs.frozen
class SpeechStarted:
    """Caller speech began at audio time ``at`` (seconds); used for barge-in."""

    at: float


@attrs.frozen
class UtteranceEnded:
    """An utterance spanned ``start``..``end`` (audio seconds) and the pause has elapsed."""

    start: float
    end: float


class UtteranceDetector:
    """Energy-based endpointing over PCM16LE mono chunks.

    ``pause`` is the silence that ends an utterance (Nova 2: 1.5/1.75/2.0 s by sensitivity),
    ``min_speech`` the speech needed to start one, ``threshold_dbfs`` the per-frame RMS
    level that counts as speech.
    """

    def __init__(
        self, *, sample_rate: int, pause: float, threshold_dbfs: float, min_speech: float
    ) -> None:
        self._frame = sample_rate // 100  # 10 ms
        self._frame_seconds = self._frame / sample_rate
        self._threshold = 32768.0 * 10 ** (threshold_dbfs / 20)
        self._pause_frames = max(1, round(pause / self._frame_seconds))
        self._min_frames = max(1, round(min_speech / self._frame_seconds))
        self._pending = b""
        self._frames_seen = 0
        self._speaking = False
        self._run = 0  # consecutive loud frames (idle) or quiet frames (speaking)
        self._start = 0  # frame index where the current loud run / utterance started
        self._last_loud = 0  # frame index after the last loud frame

    @property
    def position(self) -> float:
        """Seconds of audio analysed so far."""
        return self._frames_seen * self._frame_seconds

    @property
    def speaking(self) -> bool:
        """True while inside a detected utterance."""
        return self._speaking

    def feed(self, pcm: bytes) -> list[SpeechStarted | UtteranceEnded]:
        """Analyse more audio; return the speech starts and utterance ends it completes."""
        data = self._pending + pcm
        usable = len(data) // (2 * self._frame) * 2 * self._frame
        self._pending = data[usable:]
        if not usable:
            return []
        samples = np.frombuffer(data[:usable], dtype="<i2").astype(np.float32)
        frames = samples.reshape(-1, self._frame)
        loud = np.sqrt(np.mean(frames * frames, axis=1)) >= self._threshold
        first = self._frames_seen
        self._frames_seen += len(loud)
        # Fast paths: a chunk that does not change state costs no per-frame Python work.
        if not self._speaking and not loud.any():
            self._run = 0
            return []
        if self._speaking and loud.all():
            self._run = 0
            self._last_loud = self._frames_seen
            return []
        if self._speaking and not loud.any() and self._run + len(loud) < self._pause_frames:
            self._run += len(loud)
            return []
        out: list[SpeechStarted | UtteranceEnded] = []
        for i, is_loud in enumerate(loud.tolist()):
            index = first + i
            if not self._speaking:
                if is_loud:
                    if self._run == 0:
                        self._start = index
                    self._run += 1
                    if self._run >= self._min_frames:
                        self._speaking = True
                        self._run = 0
                        self._last_loud = index + 1
                        out.append(SpeechStarted(self._start * self._frame_seconds))
                else:
                    self._run = 0
            elif is_loud:
                self._run = 0
                self._last_loud = index + 1
            else:
                self._run += 1
                if self._run >= self._pause_frames:
                    out.append(
                        UtteranceEnded(
                            self._start * self._frame_seconds, self._last_loud * self._frame_seconds
                        )
                    )
                    self._speaking = False
                    self._run = 0
        return out


@attrs.frozen(kw_only=True)
class TurnPlan:
    """Everything one assistant turn says, decided when the caller's utterance ended."""

    number: int
    completion_id: str
    user_text: str
    assistant_text: str
    user_content_id: str
    speculative_content_id: str
    audio_content_id: str
    final_content_id: str
    input_speech_tokens: int
    output_text_tokens: int


class Conversation:
    """Deterministic source of turn content for one stream."""

    def __init__(self, *, seed: int, system_prompt: str) -> None:
        digest = hashlib.sha256(f"{seed}\x1f{system_prompt}".encode()).digest()
        self._rng = random.Random(int.from_bytes(digest[:8], "little"))
        self.session_id = self.new_id()
        self._turns = 0

    def new_id(self) -> str:
        """A UUID4-shaped id drawn from the seeded RNG."""
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def plan_turn(self, utterance: UtteranceEnded, reply: str | None = None) -> TurnPlan:
        """The next turn's transcript, reply and ids for a detected utterance (``reply``
        replaces the drawn phrase: an answer to text input or to a tool result)."""
        self._turns += 1
        drawn = self._rng.choice(ASSISTANT_PHRASES)
        reply = drawn if reply is None else reply
        return TurnPlan(
            number=self._turns,
            completion_id=self.new_id(),
            user_text=self._rng.choice(USER_PHRASES),
            assistant_text=reply,
            user_content_id=self.new_id(),
            speculative_content_id=self.new_id(),
            audio_content_id=self.new_id(),
            final_content_id=self.new_id(),
            # Nova bills speech at roughly 25 tokens per second of audio; text ≈ words * 1.3.
            input_speech_tokens=max(1, round((utterance.end - utterance.start) * 25)),
            output_text_tokens=max(1, round(len(reply.split()) * 1.3)),
        )
