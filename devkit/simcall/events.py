"""What a simulated carrier hears from the daemon, as records (both dialects).

The carrier-side parsers (:mod:`devkit.simcall.twilio_caller`,
:mod:`devkit.simcall.asterisk_caller`) turn each WebSocket message the daemon sends into
these; anything the daemon sends that the real carrier would not accept raises a
:class:`~actors.errors.CarrierProtocolError` subclass (here the *daemon* broke the protocol).
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

__all__ = [
    "AssistantAudio",
    "ClearRequested",
    "DaemonEvent",
    "DaemonNotice",
    "HangupRequested",
    "MarkRequested",
]


@attrs.frozen(kw_only=True)
class AssistantAudio:
    """Audio to queue for playback, in the carrier's wire encoding."""

    payload: bytes
    seconds: float
    """Playback duration of ``payload``."""


@attrs.frozen(kw_only=True)
class MarkRequested:
    """The daemon asked to be told when playback reaches this point."""

    name: str


@attrs.frozen(kw_only=True)
class ClearRequested:
    """Barge-in: drop everything queued for playback (Twilio ``clear``, ``FLUSH_MEDIA``)."""


@attrs.frozen(kw_only=True)
class HangupRequested:
    """The daemon asked the carrier to hang up (Asterisk ``HANGUP``)."""


@attrs.frozen(kw_only=True)
class DaemonNotice:
    """A command the simulated carrier accepts but does not act on (``ANSWER``, ...)."""

    name: str
    fields: Mapping[str, object] = attrs.field(factory=dict)


DaemonEvent = AssistantAudio | MarkRequested | ClearRequested | HangupRequested | DaemonNotice
