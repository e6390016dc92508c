"""No dead air: what a call does when its assistant cannot go on.

Two failures end the conversation while the caller is on the line (the carrier has started
the stream):

- **Nova Sonic is lost for good.** Today any :class:`~actors.errors.SonicError` that
  leaves the conversation ends it (the session already rotates a stream that hits its time
  limit, so what escapes is not recoverable by it). The stream-recovery work adds retries
  and a distinct "unrecoverable" error when they are exhausted: narrowing
  :data:`FALLBACK_ERRORS` to it is the only change this module then needs.
- **The prompt is unavailable.** A call's prompt is loaded once, when the carrier's start
  arrives, and held in memory for the whole call: rotations replay that text and never
  fetch it again (a call's prompt is fixed when it starts). So "unavailable mid-call" can
  only happen at that load, after the caller is connected: the admission check refuses
  before the upgrade only a prompt *known* to be missing, so a store outage with nothing
  cached, a load timeout, or a prompt deleted since admission surfaces here, as a
  :class:`~actors.errors.PromptError` from the conversation. (An invalid assistant name is
  refused before the conversation exists and plays nothing.)

Either way the call (:meth:`sessions.call.CallChannel`) plays a fallback clip
(:mod:`actors.fallback_audio`: the assistant's ``fallback_audio``, else the daemon's
``FALLBACK_AUDIO``; with the prompt unavailable there is no definition, so the daemon's),
waits until the carrier confirms the caller heard it (its mark, or the playback estimate
without marks), bounded by the clip's length plus ``FALLBACK_PLAY_MARGIN_MS``, then
transfers the call when the assistant has a transfer target and a :class:`FallbackTransfer`
can transfer, and otherwise ends it with the failure's own close code (the code says why;
the call-end line's ``fallback`` field says what the caller heard).
"""

from __future__ import annotations

import time
from typing import Protocol

from actors.audio_pumps import (
    AnswerEnded,
    AssistantAudio,
    AssistantCommand,
    ClearPlayback,
    OutboundQueue,
)
from actors.errors import InvalidAssistantName, PromptError, SonicError
from actors.fallback_audio import FallbackClip

FALLBACK_ERRORS: tuple[type[Exception], ...] = (SonicError, PromptError)
"""Conversation failures after which the caller hears the fallback clip. Once the stream
recovery lands, narrow ``SonicError`` here to its ``SonicUnrecoverable``."""

TRANSFER_TIMEOUT = 10.0
"""Seconds the call control has to accept a transfer before the call is ended instead."""

CLIP_CHUNK_SECONDS = 0.1
"""The clip is queued in pieces this long, like Sonic's own audio, so the outbound queue's
bound in seconds keeps applying."""


def needs_fallback(exc: BaseException) -> bool:
    """Whether the conversation's failure ``exc`` calls for the fallback clip."""
    return isinstance(exc, FALLBACK_ERRORS) and not isinstance(exc, InvalidAssistantName)


class FallbackTransfer(Protocol):
    """What the call asks of the carrier's call control (built by the transfer tool's
    executor): move the caller elsewhere. The call does not know how (Twilio's REST API,
    Asterisk's dialplan)."""

    async def transfer(self, target: str) -> bool:
        """Transfer the call to ``target`` (E.164 number or SIP URI); ``True`` once the
        carrier accepted it. Must not raise for an ordinary refusal: return ``False``."""
        ...


async def queue_clip(
    queue: OutboundQueue[AssistantCommand], clip: FallbackClip, *, turn: int
) -> None:
    """Drop whatever assistant audio is still queued, have the carrier drop what it holds,
    then queue ``clip`` as turn ``turn``, ended by a mark.

    The clear comes first because the failed answer will never be finished: the apology
    should follow at once, not after the rest of a dead sentence.
    """
    queue.clear()
    await queue.put(ClearPlayback(through=turn - 1), 0)
    step = max(2, round(clip.sample_rate * CLIP_CHUNK_SECONDS) * 2)
    pcm = clip.pcm
    for offset in range(0, len(pcm), step):
        piece = pcm[offset : offset + step]
        audio = AssistantAudio(pcm=piece, arrived=time.perf_counter(), turn=turn)
        await queue.put(audio, len(piece) / (2 * clip.sample_rate))
    await queue.put(AnswerEnded(turn=turn), 0)
