"""Asterisk ``chan_websocket`` (channel type ``WebSocket``) as a sans-IO dialect.

BINARY frames carry raw codec bytes (no RTP header); TEXT frames carry control messages in
either the legacy one-line format (``MEDIA_START connection_id:… format:ulaw …``) or the
JSON format (``{"event": …}`` in, ``{"command": …}`` out), chosen by Asterisk's
``control_message_format``. We detect the format from the first TEXT message and answer in
the same one. Field names follow ``channels/chan_websocket.c``.

Asterisk quirks handled here: audio may arrive before ``MEDIA_START`` (asterisk#1712) — it
is kept, up to ``max_early_audio_bytes``, and replayed right after ``CallStarted``; a
message we send must be at most 65,500 bytes (larger hangs the call up), so audio is split;
odd-sized audio tails are dropped by Asterisk outside buffering mode, so we send whole
``optimal_frame_size`` frames and hold the tail (padded with silence at a mark); Asterisk
ignores command TEXT messages over 128 bytes; ``FLUSH_MEDIA`` also drops queued marks.

What ``MEDIA_START`` tells about the Asterisk release (``_create_event_MEDIA_START`` in
``channels/chan_websocket.c``, checked against the release tags):

* ``channel_id`` is missing in 20.16.0, 22.6.0, 23.0.0 and every 21.x; the dialect then
  generates a call id unique to this connection (``connection_id`` is the
  ``websocket_client.conf`` section name for outbound calls, the same for every call).
* The JSON control format and ``MARK_MEDIA`` arrived together, in 20.18.0, 22.8.0 and
  23.2.0 (never 21.x). A JSON ``MEDIA_START`` therefore proves marks exist; a plain-text one
  proves nothing (20.18.0+ still speaks plain text by default), and an unknown command is
  only logged by Asterisk, never answered. So with ``marks=auto`` marks are sent only after a
  JSON ``MEDIA_START``.
* Nothing says whether the channel is answered: ``MEDIA_START`` carries no channel state.
  ``websocket_handoff_to_channel`` sends ``MEDIA_START`` and then queues
  ``AST_CONTROL_ANSWER`` itself unless the dial string has the ``n`` option; ``ANSWER`` from
  the app only queues the same control frame (``process_text_message``). Since the daemon
  cannot tell an ``n`` dial from a normal one, it never sends ``ANSWER``: dial without ``n``.
"""

from __future__ import annotations

import enum
import hmac
import json
import re
import uuid
from base64 import b64decode
from typing import Any

from actors.audio_codec import Encoding, MediaFormat, silence
from actors.errors import (
    CarrierBadPayload,
    CarrierBufferOverflow,
    CarrierLocalError,
    CarrierMalformedMessage,
    CarrierMessageTooBig,
    CarrierUnauthorized,
    CarrierUnexpectedMessage,
    CarrierUnsupportedMedia,
)
from sessions.dialects.base import (
    AudioReceived,
    CallStarted,
    CallStopped,
    CarrierNotice,
    ClearAudio,
    Command,
    DtmfReceived,
    Event,
    FlowPaused,
    FlowResumed,
    HangUp,
    MarkPlayed,
    Message,
    SendAudio,
    SendMark,
    StreamState,
    as_digit,
    as_int,
    as_str,
    assistant_from_path,
    header_value,
)

SUBPROTOCOL = "media"
MAX_MESSAGE_BYTES = 65_500
"""Asterisk's WebSocket payload limit, applied both ways."""
MAX_COMMAND_BYTES = 128
"""chan_websocket ignores command TEXT messages longer than this."""
DEFAULT_EARLY_AUDIO_BYTES = 160_000
"""Audio kept before ``MEDIA_START``: 5 s of slin16, 20 s of ulaw."""
ASSISTANT_VARIABLE = "NOVAVOICE_ASSISTANT"

FORMATS = {
    "ulaw": MediaFormat(Encoding.MULAW, 8000),
    "alaw": MediaFormat(Encoding.ALAW, 8000),
    "slin": MediaFormat(Encoding.PCM16, 8000),
    "slin16": MediaFormat(Encoding.PCM16, 16000),
}
_EVENT_NAME = re.compile(r"[A-Z][A-Z_]{1,40}")
_ID_EVENTS = frozenset({"MEDIA_BUFFERING_COMPLETED", "MEDIA_MARK_PROCESSED"})


class MarksMode(enum.Enum):
    """``ASTERISK_MARKS``: whether ``MARK_MEDIA`` is sent."""

    AUTO = "auto"
    """Only once ``MEDIA_START`` proves a release that has marks (JSON format)."""
    ON = "on"
    OFF = "off"


class ControlFormat(enum.Enum):
    """Asterisk's ``control_message_format``."""

    AUTO = "auto"
    PLAIN = "plain-text"
    JSON = "json"


def select_subprotocol(offered: list[str] | tuple[str, ...]) -> str | None:
    """``media`` if the client offered it (Asterisk's client asks for it), else none."""
    return SUBPROTOCOL if SUBPROTOCOL in offered else None


def check_upgrade_auth(
    headers: Any,
    *,
    basic: tuple[str, str] | None = None,
    bearer_token: str | None = None,
) -> None:
    """Check the upgrade's ``Authorization`` header against Basic and/or bearer secrets.

    With neither configured, nothing is checked (the daemon refuses to listen publicly
    that way unless told ``--insecure``). Every failure (missing, wrong, malformed, or a
    scheme that is not configured) raises :class:`~actors.errors.CarrierUnauthorized`, i.e.
    HTTP 401: ``websocket_client_handle_response_code`` in Asterisk's
    ``res/res_websocket_client.c`` only recognises 401 as "unauthorized" and logs anything
    else as an invalid response. Comparisons are constant-time.
    """
    if basic is None and bearer_token is None:
        return
    value = header_value(headers, "authorization")
    if not value:
        raise CarrierUnauthorized("missing Authorization header")
    scheme, _, credentials = value.strip().partition(" ")
    scheme = scheme.lower()
    credentials = credentials.strip()
    if scheme == "basic" and basic is not None:
        try:
            decoded = b64decode(credentials, validate=True)
        except ValueError:
            raise CarrierUnauthorized("malformed Basic credentials") from None
        user, sep, password = decoded.partition(b":")
        user_ok = hmac.compare_digest(user, basic[0].encode())
        password_ok = hmac.compare_digest(password, basic[1].encode())
        if sep and user_ok & password_ok:
            return
        raise CarrierUnauthorized("wrong Basic credentials")
    if scheme == "bearer" and bearer_token is not None:
        if hmac.compare_digest(credentials.encode(), bearer_token.encode()):
            return
        raise CarrierUnauthorized("wrong bearer token")
    if scheme == "basic":
        # Asterisk's client can only send Basic (websocket_client_handshake): say what to set.
        raise CarrierUnauthorized(
            "Basic credentials sent but only a bearer token is configured; "
            "set ASTERISK_BASIC_AUTH=user:password for Asterisk"
        )
    raise CarrierUnauthorized(f"unsupported Authorization scheme {scheme[:16]!r}")


def _parse_plain(text: str) -> tuple[str, dict[str, object]]:
    name, _, rest = text.partition(" ")
    fields: dict[str, object] = {}
    if name == "ERROR":  # error_text runs to the end of the line and contains spaces
        head, _, error_text = rest.partition("error_text:")
        rest = head
        fields["error_text"] = error_text
    elif name in _ID_EVENTS:
        if rest:
            fields["correlation_id"] = rest.strip()
        return name, fields
    for token in rest.split():
        key, sep, value = token.partition(":")
        if not sep or not key:
            raise CarrierMalformedMessage(f"{name}: token without 'key:value'")
        fields[key] = value
    return name, fields


class AsteriskDialect:
    """One chan_websocket media connection (Asterisk dials us, or we accepted its call).

    The assistant comes from the path (``/asterisk/<name>``), else ``?assistant=`` (the
    dial string's ``v()`` option adds it), else the channel variable
    ``NOVAVOICE_ASSISTANT`` (JSON format only), else ``default_assistant``.
    """

    carrier = "asterisk"

    def __init__(
        self,
        *,
        path: str = "/asterisk",
        path_prefix: str = "/asterisk",
        default_assistant: str | None = None,
        control_format: ControlFormat = ControlFormat.AUTO,
        max_early_audio_bytes: int = DEFAULT_EARLY_AUDIO_BYTES,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        marks: MarksMode = MarksMode.AUTO,
    ) -> None:
        self.state = StreamState.NEW
        self.control_format = control_format
        self.media_format: MediaFormat | None = None
        self.frame_bytes = 0
        self.paused = False
        self._path_assistant = assistant_from_path(path, path_prefix)
        self._default_assistant = default_assistant
        self._max_early = max_early_audio_bytes
        self._max_bytes = max_message_bytes
        self._early: list[bytes] = []
        self._early_bytes = 0
        self._sequence = 0
        self._bytes_in = 0
        self._tail = b""
        self._pending_marks: set[str] = set()
        self._marks_mode = marks
        self.marks_enabled = marks is MarksMode.ON
        """Whether ``SendMark`` becomes ``MARK_MEDIA`` (decided at ``MEDIA_START``)."""
        self.audio_bytes_sent = 0
        """Wire bytes of audio handed out as BINARY frames (for the heard estimate)."""

    @property
    def pending_marks(self) -> set[str]:
        """Marks sent and not yet processed (forgotten at ``ClearAudio``: Asterisk drops
        them with the flushed queue, and older builds never answer ``MARK_MEDIA``)."""
        return set(self._pending_marks)

    # --- inbound -----------------------------------------------------------------------

    def receive_bytes(self, data: bytes) -> list[Event]:
        """One BINARY media frame."""
        if len(data) > self._max_bytes:
            raise CarrierMessageTooBig(f"binary message over {self._max_bytes} bytes")
        if not data:
            return []
        if self.state is StreamState.STREAMING:
            return [self._audio(data)]
        if self.state is StreamState.STOPPED:
            return []
        self._early_bytes += len(data)
        if self._early_bytes > self._max_early:
            raise CarrierBufferOverflow(f"over {self._max_early} bytes of audio before MEDIA_START")
        self._early.append(bytes(data))
        return []

    def _audio(self, data: bytes) -> AudioReceived:
        fmt = self.media_format
        assert fmt is not None
        if len(data) % fmt.bytes_per_sample:
            raise CarrierBadPayload("odd-length slin frame")
        self._sequence += 1
        timestamp = self._bytes_in * 1000 // (fmt.sample_rate * fmt.bytes_per_sample)
        self._bytes_in += len(data)
        return AudioReceived(payload=data, sequence=self._sequence, timestamp_ms=timestamp)

    def receive_text(self, text: str) -> list[Event]:
        """One TEXT control message, plain-text or JSON."""
        if len(text) > self._max_bytes:
            raise CarrierMessageTooBig(f"text message over {self._max_bytes} characters")
        stripped = text.strip()
        if not stripped:
            raise CarrierMalformedMessage("empty control message")
        is_json = stripped.startswith("{")
        if self.control_format is ControlFormat.AUTO:
            self.control_format = ControlFormat.JSON if is_json else ControlFormat.PLAIN
        elif is_json != (self.control_format is ControlFormat.JSON):
            raise CarrierMalformedMessage(f"control message not in {self.control_format.value}")
        if is_json:
            try:
                msg = json.loads(stripped)
            except (ValueError, RecursionError):
                raise CarrierMalformedMessage("control message is not valid JSON") from None
            if not isinstance(msg, dict) or not isinstance(msg.get("event"), str):
                raise CarrierMalformedMessage("JSON control message without 'event'")
            name: str = msg.pop("event")
            fields: dict[str, object] = msg
        else:
            name, fields = _parse_plain(stripped)
        if not _EVENT_NAME.fullmatch(name):
            raise CarrierMalformedMessage("control message name is not an event name")
        return self._dispatch(name, fields)

    def receive_close(self, code: int | None = None) -> list[Event]:
        """The socket closed: that is how Asterisk signals hang-up.

        Asterisk has no hang-up message: ``webchan_hangup`` calls ``ast_websocket_close``
        with the channel's tech hang-up cause, or 1000 when there is none, i.e. a normal
        hang-up. So CLOSE 1000 is a hang-up; any other code (or none: the TCP connection
        simply dropped) is a disconnection.
        """
        if self.state is StreamState.STOPPED:
            return []
        self.state = StreamState.STOPPED
        return [CallStopped(reason="hangup" if code == 1000 else "closed")]

    def _dispatch(self, name: str, fields: dict[str, object]) -> list[Event]:
        if name == "MEDIA_START":
            return self._on_media_start(fields)
        if self.state is StreamState.STOPPED:
            return []  # late notifications after the stream ended are harmless
        if name in ("STATUS", "QUEUE_DRAINED", "MEDIA_BUFFERING_COMPLETED", "ERROR"):
            return [CarrierNotice(name=name, fields=fields)]
        if name not in ("DTMF_END", "MEDIA_XOFF", "MEDIA_XON", "MEDIA_MARK_PROCESSED"):
            return []
        if self.state is not StreamState.STREAMING:
            raise CarrierUnexpectedMessage(f"{name} before MEDIA_START")
        if name == "DTMF_END":
            return [DtmfReceived(digit=as_digit(fields.get("digit"), "digit"))]
        if name == "MEDIA_XOFF":
            self.paused = True
            return [FlowPaused()]
        if name == "MEDIA_XON":
            self.paused = False
            return [FlowResumed()]
        mark = fields.get("correlation_id")
        if not isinstance(mark, str) or mark not in self._pending_marks:
            return []
        self._pending_marks.discard(mark)
        return [MarkPlayed(name=mark)]

    def _on_media_start(self, fields: dict[str, object]) -> list[Event]:
        if self.state is not StreamState.NEW:
            raise CarrierUnexpectedMessage("MEDIA_START received twice")
        format_name = as_str(fields.get("format"), "format", max_len=32)
        fmt = FORMATS.get(format_name)
        if fmt is None:
            raise CarrierUnsupportedMedia(f"format {format_name!r}; use ulaw, alaw, slin16")
        frame = as_int(fields.get("optimal_frame_size"), "optimal_frame_size", maximum=65_500)
        if frame == 0 or frame % fmt.bytes_per_sample:
            raise CarrierMalformedMessage("optimal_frame_size does not fit the format")
        connection_id = as_str(fields.get("connection_id"), "connection_id")
        channel = fields.get("channel")
        channel_id = fields.get("channel_id")
        generated = channel_id is None
        if channel_id is None:
            # 20.16.0, 22.6.0, 23.0.0 and 21.x send no channel_id, and connection_id is the
            # websocket_client.conf section name for outbound calls: shared by every call.
            channel_id = f"{connection_id[:64]}-{uuid.uuid4().hex[:16]}"
        variables = fields.get("channel_variables", {})
        if not isinstance(variables, dict):
            raise CarrierMalformedMessage("channel_variables is not an object")
        custom = {str(k): str(v) for k, v in variables.items()}
        assistant = (
            self._path_assistant or custom.get(ASSISTANT_VARIABLE) or self._default_assistant
        )
        self.media_format = fmt
        self.frame_bytes = frame
        self.state = StreamState.STREAMING
        if self._marks_mode is MarksMode.AUTO:
            # JSON control messages and MARK_MEDIA both arrived in 20.18.0/22.8.0/23.2.0.
            self.marks_enabled = self.control_format is ControlFormat.JSON
        events: list[Event] = [
            CallStarted(
                carrier=self.carrier,
                call_id=as_str(channel_id, "channel_id"),
                stream_id=connection_id,
                assistant=assistant,
                media_format=fmt,
                frame_bytes=frame,
                custom_parameters=custom,
                channel=channel if isinstance(channel, str) else None,
                call_id_generated=generated,
            )
        ]
        early, self._early = self._early, []
        events += [self._audio(data) for data in early]
        return events

    # --- outbound ----------------------------------------------------------------------

    def _command(self, name: str, correlation_id: str | None = None) -> str:
        if self.control_format is ControlFormat.JSON:
            body: dict[str, str] = {"command": name}
            if correlation_id is not None:
                body["correlation_id"] = correlation_id
            text = json.dumps(body, separators=(",", ":"))
        else:
            text = name if correlation_id is None else f"{name} {correlation_id}"
        if len(text.encode()) > MAX_COMMAND_BYTES:
            raise CarrierLocalError(f"{name} command over {MAX_COMMAND_BYTES} bytes")
        return text

    def _frames(self, data: bytes) -> list[Message]:
        per_message = max(self.frame_bytes, self._max_bytes - self._max_bytes % self.frame_bytes)
        out: list[Message] = [data[i : i + per_message] for i in range(0, len(data), per_message)]
        return out

    def send(self, command: Command) -> list[Message]:
        """Messages for ``command``; audio goes out in whole frames of ≤ 65,500 bytes."""
        if self.state is StreamState.STOPPED:
            return []
        if self.state is not StreamState.STREAMING:
            raise CarrierLocalError(f"{type(command).__name__} before MEDIA_START")
        if isinstance(command, SendAudio):
            data = self._tail + command.payload
            whole = len(data) - len(data) % self.frame_bytes
            self._tail = data[whole:]
            self.audio_bytes_sent += whole
            return self._frames(data[:whole]) if whole else []
        if isinstance(command, SendMark):
            if not self.marks_enabled:
                # Older releases only log "unknown command" and never answer (see the
                # module docstring); a mark nobody answers is noise, so none is sent.
                return []
            name = command.name
            if not name or any(c.isspace() for c in name) or name in self._pending_marks:
                raise CarrierLocalError("mark name must be new, non-empty, without spaces")
            messages: list[Message] = []
            if self._tail:  # play the tail before the mark, padded to a whole frame
                assert self.media_format is not None
                unit = silence(self.media_format, 1000)[: self.media_format.bytes_per_sample]
                pad = unit * ((self.frame_bytes - len(self._tail)) // len(unit))
                messages += self._frames(self._tail + pad)
                self.audio_bytes_sent += len(self._tail) + len(pad)
                self._tail = b""
            messages.append(self._command("MARK_MEDIA", name))
            self._pending_marks.add(name)
            return messages
        if isinstance(command, ClearAudio):
            self._tail = b""
            self._pending_marks.clear()
            return [self._command("FLUSH_MEDIA")]
        if isinstance(command, HangUp):
            # chan_websocket's HANGUP queues a hang-up with cause 16 (normal clearing)
            # (handle_command in channels/chan_websocket.c); the socket closes after it.
            return [self._command("HANGUP")]
        raise CarrierLocalError(f"unknown command {type(command).__name__}")
