"""The records every carrier dialect produces and consumes, and shared parsing helpers.

A dialect is a sans-IO object: the daemon hands it each WebSocket message
(``receive_text`` / ``receive_bytes``) and gets back a list of :data:`Event` records; it
hands it a :data:`Command` and gets back the WebSocket messages to write (``str`` → TEXT
frame, ``bytes`` → BINARY frame). Every protocol violation raises a
:class:`~actors.errors.CarrierError` carrying the close code and reason to send.

Audio in :class:`AudioReceived` and :class:`SendAudio` is in the carrier's wire encoding
(``CallStarted.media_format``); :class:`actors.audio_codec.CarrierCodec` converts it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import attrs

from actors.audio_codec import MediaFormat
from actors.errors import CarrierMalformedMessage


class StreamState(enum.Enum):
    """Where a carrier stream is in its life."""

    NEW = "new"
    """Socket accepted; nothing (or only early audio) received yet."""
    CONNECTED = "connected"
    """Twilio's ``connected`` arrived; waiting for ``start``."""
    STREAMING = "streaming"
    """The stream started: format and identifiers are known, audio flows."""
    STOPPED = "stopped"
    """The carrier stopped the stream, we hung up, or the socket closed."""


# --- events (carrier → daemon) -----------------------------------------------------------


@attrs.frozen(kw_only=True)
class CallStarted:
    """The stream started; identifiers, assistant and media format are now known."""

    carrier: str
    call_id: str
    """Twilio ``callSid``; Asterisk ``channel_id`` (the channel's unique id)."""
    stream_id: str
    """Twilio ``streamSid``; Asterisk ``connection_id``."""
    assistant: str | None
    """Chosen assistant (path, then carrier parameters, then the default); unvalidated."""
    media_format: MediaFormat
    frame_bytes: int
    """Bytes of one carrier frame in the wire encoding (ptime worth of audio)."""
    custom_parameters: Mapping[str, str] = attrs.field(factory=dict)
    """Twilio ``customParameters``; Asterisk channel variables (JSON format only)."""
    account_id: str | None = None
    channel: str | None = None
    call_id_generated: bool = False
    """The carrier sent no call id (older Asterisk): ``call_id`` was generated, unique."""


@attrs.frozen(kw_only=True)
class AudioReceived:
    """One frame of caller audio in the carrier's wire encoding."""

    payload: bytes
    sequence: int
    """Carrier sequence number (Twilio) or our own frame counter (Asterisk)."""
    timestamp_ms: int
    """Milliseconds since the stream started (Twilio's, or derived from byte counts)."""


@attrs.frozen(kw_only=True)
class DtmfReceived:
    """The caller pressed a key."""

    digit: str


@attrs.frozen(kw_only=True)
class MarkPlayed:
    """A mark we sent was reached by playback (or discarded by a clear, on Twilio)."""

    name: str


@attrs.frozen(kw_only=True)
class CallStopped:
    """The stream ended: ``reason`` is ``"stop"``, ``"hangup"`` or ``"closed"``."""

    reason: str


@attrs.frozen(kw_only=True)
class FlowPaused:
    """The carrier asked us to stop sending audio (Asterisk ``MEDIA_XOFF``)."""


@attrs.frozen(kw_only=True)
class FlowResumed:
    """The carrier may take audio again (Asterisk ``MEDIA_XON``)."""


@attrs.frozen(kw_only=True)
class CarrierNotice:
    """An informational carrier message the bridge does not act on (STATUS, ERROR, ...)."""

    name: str
    fields: Mapping[str, object] = attrs.field(factory=dict)


Event = (
    CallStarted
    | AudioReceived
    | DtmfReceived
    | MarkPlayed
    | CallStopped
    | FlowPaused
    | FlowResumed
    | CarrierNotice
)


# --- commands (daemon → carrier) ---------------------------------------------------------


@attrs.frozen(kw_only=True)
class SendAudio:
    """Queue audio for playback; ``payload`` is in the carrier's wire encoding."""

    payload: bytes


@attrs.frozen(kw_only=True)
class SendMark:
    """Ask to be told (``MarkPlayed``) when playback reaches this point."""

    name: str


@attrs.frozen(kw_only=True)
class ClearAudio:
    """Barge-in: drop everything queued for playback."""


@attrs.frozen(kw_only=True)
class HangUp:
    """End the call from our side (the ``hang_up`` tool): Asterisk's ``HANGUP`` command;
    nothing on Twilio, where closing the stream lets the TwiML continue."""


Command = SendAudio | SendMark | ClearAudio | HangUp
Message = str | bytes


class Dialect(Protocol):
    """What the daemon needs from a carrier dialect."""

    carrier: str
    state: StreamState

    def receive_text(self, text: str) -> list[Event]:
        """Parse one TEXT message."""
        ...

    def receive_bytes(self, data: bytes) -> list[Event]:
        """Parse one BINARY message."""
        ...

    def receive_close(self, code: int | None = None) -> list[Event]:
        """The socket closed with ``code`` (``None``: no close frame): a final
        ``CallStopped`` unless the stream already stopped."""
        ...

    def send(self, command: Command) -> list[Message]:
        """The WebSocket messages that carry ``command`` (possibly none)."""
        ...


# --- helpers -----------------------------------------------------------------------------


def header_value(headers: Iterable[tuple[bytes | str, bytes | str]], name: str) -> str | None:
    """First value of header ``name`` (case-insensitive) from an upgrade request's headers.

    Accepts trio-websocket's list of lower-cased ``(bytes, bytes)`` pairs or ``str`` pairs.
    """
    wanted = name.lower()
    for key, value in headers:
        k = key.decode("latin-1") if isinstance(key, bytes) else key
        if k.lower() == wanted:
            return value.decode("latin-1") if isinstance(value, bytes) else value
    return None


def assistant_from_path(path: str, prefix: str) -> str | None:
    """The assistant named by ``<prefix>/<name>`` in a request path, else ``?assistant=``.

    The name is percent-decoded but not validated: the prompt path owns the naming rule
    and refuses hostile names itself.
    """
    parts = urlsplit(path)
    route = parts.path.rstrip("/")
    base = prefix.rstrip("/")
    if route.startswith(base + "/"):
        rest = route[len(base) + 1 :]
        if rest:
            return unquote(rest)
    values = parse_qs(parts.query).get("assistant")
    return values[0] if values else None


def as_int(value: object, field: str, *, maximum: int = 10**15) -> int:
    """An integer that may arrive as a JSON number or a decimal string (Twilio sends both)."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and 0 < len(value) <= 16 and value.isascii() and value.isdigit():
        number = int(value)
    else:
        raise CarrierMalformedMessage(f"{field} is not an integer")
    if not 0 <= number <= maximum:
        raise CarrierMalformedMessage(f"{field} out of range")
    return number


def as_str(value: object, field: str, *, max_len: int = 256) -> str:
    """A non-empty string of bounded length, else ``CarrierMalformedMessage``."""
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise CarrierMalformedMessage(f"{field} is not a string of 1-{max_len} characters")
    return value


DTMF_DIGITS = frozenset("0123456789*#ABCDabcd")


def as_digit(value: object, field: str) -> str:
    """One DTMF digit (``0-9``, ``*``, ``#``, ``A-D``), upper-cased."""
    if not isinstance(value, str) or value not in DTMF_DIGITS:
        raise CarrierMalformedMessage(f"{field} is not a DTMF digit")
    return value.upper()
