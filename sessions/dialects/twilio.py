"""Twilio Media Streams, bidirectional (``<Connect><Stream>``), as a sans-IO dialect.

In: ``connected`` → ``start`` → ``media``/``dtmf``/``mark``… → ``stop``, all JSON TEXT
frames; numbers (``sequenceNumber``, ``chunk``, ``timestamp``) arrive as strings.
Out: ``media`` (base64 μ-law 8 kHz), ``mark`` and ``clear``. Twilio has no hang-up message:
closing the socket ends ``<Connect>`` (``reference/telephony.md`` §1).

Policy: a message that is not JSON, lacks a required field, carries bad base64, arrives in
the wrong state, names another stream, or exceeds :data:`MAX_MESSAGE_CHARS` raises a
:class:`~actors.errors.CarrierError`. Unknown event types are ignored and counted (Twilio
adds fields and events over time); so are ``outbound``-track media echoes.
"""

from __future__ import annotations

import binascii
import json
from base64 import b64decode, b64encode
from collections import OrderedDict
from typing import Any

from actors.audio_codec import Encoding, MediaFormat
from actors.errors import (
    CarrierBadPayload,
    CarrierForbidden,
    CarrierLocalError,
    CarrierMalformedMessage,
    CarrierMessageTooBig,
    CarrierStreamMismatch,
    CarrierUnexpectedMessage,
    CarrierUnsupportedMedia,
    CarrierWrongFrameType,
)
from sessions.dialects.base import (
    AudioReceived,
    CallStarted,
    CallStopped,
    ClearAudio,
    Command,
    DtmfReceived,
    Event,
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
)

MAX_MESSAGE_CHARS = 64 * 1024
"""Cap on one TEXT message. A 20 ms media message is ~300 characters; ``start`` with custom
parameters a few KiB. Configure the WebSocket server with the same cap in bytes."""
MAX_MARK_NAME = 256
MAX_PENDING_MARKS = 4096
"""Outstanding marks remembered; beyond it the oldest is forgotten (and counted)."""
TWILIO_FORMAT = MediaFormat(Encoding.MULAW, 8000)
FRAME_BYTES = 160  # 20 ms of μ-law at 8 kHz


def _obj(value: object, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CarrierMalformedMessage(f"{field} is not an object")
    return value


class TwilioDialect:
    """One Twilio Media Streams connection.

    ``path`` is the upgrade request's path (``/twilio/<assistant>`` picks the assistant);
    ``default_assistant`` applies when neither the path nor ``customParameters.assistant``
    names one. With ``assistant_from_parameters=False`` (the upgrade was signed, and the
    signature covers the path but not the ``start`` message) the assistant is the path's
    or the default, and a ``customParameters.assistant`` naming another one ends the call
    with :class:`~actors.errors.CarrierForbidden` (4403) instead of choosing it.
    """

    carrier = "twilio"

    def __init__(
        self,
        *,
        path: str = "/twilio",
        path_prefix: str = "/twilio",
        default_assistant: str | None = None,
        max_message_chars: int = MAX_MESSAGE_CHARS,
        assistant_from_parameters: bool = True,
    ) -> None:
        self.state = StreamState.NEW
        self.stream_sid: str | None = None
        self._path_assistant = assistant_from_path(path, path_prefix)
        self._default_assistant = default_assistant
        self._assistant_from_parameters = assistant_from_parameters
        self._max_chars = max_message_chars
        self._last_sequence = 0
        self._pending_marks: OrderedDict[str, None] = OrderedDict()
        self._media_prefix = ""
        self._handlers = {
            "media": self._on_media,
            "connected": self._on_connected,
            "start": self._on_start,
            "dtmf": self._on_dtmf,
            "mark": self._on_mark,
            "stop": self._on_stop,
        }

    @property
    def pending_marks(self) -> list[str]:
        """Marks sent and not yet echoed, oldest first."""
        return list(self._pending_marks)

    # --- inbound -----------------------------------------------------------------------

    def receive_text(self, text: str) -> list[Event]:
        """Parse one TEXT message from Twilio."""
        if len(text) > self._max_chars:
            raise CarrierMessageTooBig(f"text message over {self._max_chars} characters")
        try:
            msg = json.loads(text)
        except (ValueError, RecursionError):
            raise CarrierMalformedMessage("message is not valid JSON") from None
        if not isinstance(msg, dict):
            raise CarrierMalformedMessage("message is not a JSON object")
        event = msg.get("event")
        if not isinstance(event, str):
            raise CarrierMalformedMessage("message has no 'event' string")
        if self.state is StreamState.STOPPED:
            raise CarrierUnexpectedMessage(f"'{event[:32]}' after stop")
        handler = self._handlers.get(event)
        if handler is None:
            return []
        return handler(msg)

    def receive_bytes(self, data: bytes) -> list[Event]:
        """Twilio never sends BINARY frames: always an error."""
        raise CarrierWrongFrameType("binary frame on a Twilio Media Stream")

    def receive_close(self, code: int | None = None) -> list[Event]:
        """The socket closed; report the end unless ``stop`` already did.

        Twilio ends a call with its ``stop`` message; a close without one (whatever
        ``code``) is a disconnection."""
        if self.state is StreamState.STOPPED:
            return []
        self.state = StreamState.STOPPED
        return [CallStopped(reason="closed")]

    def _check_sequence(self, msg: dict[str, Any]) -> int:
        seq = msg.get("sequenceNumber")
        if seq is None:  # optional: some Twilio-dialect clones omit it
            return self._last_sequence
        number = as_int(seq, "sequenceNumber")
        self._last_sequence = number
        return number

    def _check_stream(self, msg: dict[str, Any]) -> None:
        sid = msg.get("streamSid")
        if sid is not None and sid != self.stream_sid:
            raise CarrierStreamMismatch("streamSid differs from the started stream")

    def _require_streaming(self, event: str) -> None:
        if self.state is not StreamState.STREAMING:
            raise CarrierUnexpectedMessage(f"'{event}' before 'start'")

    def _on_media(self, msg: dict[str, Any]) -> list[Event]:
        # The hot path: 50 messages per second per call.
        self._require_streaming("media")
        self._check_stream(msg)
        seq = self._check_sequence(msg)
        media = _obj(msg.get("media"), "media")
        payload = media.get("payload")
        if not isinstance(payload, str):
            raise CarrierMalformedMessage("media.payload is not a string")
        try:
            audio = b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise CarrierBadPayload("media.payload is not valid base64") from None
        track = media.get("track", "inbound")
        if track not in ("inbound", "inbound_track"):
            return []
        ts = media.get("timestamp")
        timestamp = 0 if ts is None else as_int(ts, "media.timestamp")
        return [AudioReceived(payload=audio, sequence=seq, timestamp_ms=timestamp)]

    def _on_connected(self, msg: dict[str, Any]) -> list[Event]:
        if self.state is not StreamState.NEW:
            raise CarrierUnexpectedMessage("'connected' received twice or after 'start'")
        self.state = StreamState.CONNECTED
        return []

    def _on_start(self, msg: dict[str, Any]) -> list[Event]:
        if self.state not in (StreamState.NEW, StreamState.CONNECTED):
            raise CarrierUnexpectedMessage("'start' received twice")
        seq = self._check_sequence(msg)
        start = _obj(msg.get("start"), "start")
        sid = as_str(start.get("streamSid", msg.get("streamSid")), "start.streamSid")
        if msg.get("streamSid", sid) != sid:
            raise CarrierStreamMismatch("streamSid differs between message and start")
        call_sid = as_str(start.get("callSid"), "start.callSid")
        account = start.get("accountSid")
        fmt = _obj(start.get("mediaFormat"), "start.mediaFormat")
        encoding = fmt.get("encoding")
        rate = as_int(fmt.get("sampleRate"), "mediaFormat.sampleRate")
        channels = as_int(fmt.get("channels", 1), "mediaFormat.channels")
        if encoding != "audio/x-mulaw" or rate != 8000 or channels != 1:
            raise CarrierUnsupportedMedia(
                f"media format {str(encoding)[:32]}/{rate}/{channels}, want audio/x-mulaw/8000/1"
            )
        params = _obj(start.get("customParameters", {}), "start.customParameters")
        custom: dict[str, str] = {}
        for key, value in params.items():
            if not isinstance(value, str | int | float | bool) or value is None:
                raise CarrierMalformedMessage("customParameters values must be scalars")
            custom[key] = value if isinstance(value, str) else json.dumps(value)
        assistant = self._choose_assistant(custom.get("assistant"))
        self.stream_sid = sid
        self._last_sequence = seq
        # Precomputed so each outbound media message is one string concatenation.
        self._media_prefix = '{"event":"media","streamSid":' + json.dumps(sid)
        self.state = StreamState.STREAMING
        return [
            CallStarted(
                carrier=self.carrier,
                call_id=call_sid,
                stream_id=sid,
                assistant=assistant,
                media_format=TWILIO_FORMAT,
                frame_bytes=FRAME_BYTES,
                custom_parameters=custom,
                account_id=account if isinstance(account, str) else None,
            )
        ]

    def _choose_assistant(self, from_parameters: str | None) -> str | None:
        if self._assistant_from_parameters:
            return self._path_assistant or from_parameters or self._default_assistant
        signed = self._path_assistant or self._default_assistant
        if from_parameters is not None and from_parameters != signed:
            raise CarrierForbidden(
                "customParameters.assistant differs from the assistant in the signed URL"
            )
        return signed

    def _on_dtmf(self, msg: dict[str, Any]) -> list[Event]:
        self._require_streaming("dtmf")
        self._check_stream(msg)
        self._check_sequence(msg)
        dtmf = _obj(msg.get("dtmf"), "dtmf")
        return [DtmfReceived(digit=as_digit(dtmf.get("digit"), "dtmf.digit"))]

    def _on_mark(self, msg: dict[str, Any]) -> list[Event]:
        self._require_streaming("mark")
        self._check_stream(msg)
        self._check_sequence(msg)
        mark = _obj(msg.get("mark"), "mark")
        name = as_str(mark.get("name"), "mark.name", max_len=MAX_MARK_NAME)
        if name not in self._pending_marks:
            return []
        del self._pending_marks[name]
        return [MarkPlayed(name=name)]

    def _on_stop(self, msg: dict[str, Any]) -> list[Event]:
        self._require_streaming("stop")
        self._check_stream(msg)
        self._check_sequence(msg)
        self.state = StreamState.STOPPED
        return [CallStopped(reason="stop")]

    # --- outbound ----------------------------------------------------------------------

    def send(self, command: Command) -> list[Message]:
        """Messages for ``command``. After the stream stopped there is nothing to send."""
        if self.state is StreamState.STOPPED:
            return []
        if self.state is not StreamState.STREAMING:
            raise CarrierLocalError(f"{type(command).__name__} before the stream started")
        if isinstance(command, SendAudio):
            if not command.payload:
                return []
            b64 = b64encode(command.payload).decode("ascii")
            return [self._media_prefix + ',"media":{"payload":"' + b64 + '"}}']
        sid = self.stream_sid
        if isinstance(command, SendMark):
            name = command.name
            if not name or len(name) > MAX_MARK_NAME:
                raise CarrierLocalError(f"mark name must be 1-{MAX_MARK_NAME} characters")
            if name in self._pending_marks:
                raise CarrierLocalError("mark name already pending")
            self._pending_marks[name] = None
            if len(self._pending_marks) > MAX_PENDING_MARKS:
                self._pending_marks.popitem(last=False)
            return [json.dumps({"event": "mark", "streamSid": sid, "mark": {"name": name}})]
        if isinstance(command, ClearAudio):
            # Pending marks stay pending: Twilio echoes them at once after a clear.
            return [json.dumps({"event": "clear", "streamSid": sid})]
        if isinstance(command, HangUp):
            # Twilio has no hang-up message: closing the WebSocket ends <Connect><Stream>
            # and Twilio runs the next TwiML verb (or hangs up when there is none).
            return []
        raise CarrierLocalError(f"unknown command {type(command).__name__}")
