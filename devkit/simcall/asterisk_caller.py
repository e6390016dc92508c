"""The carrier's side of Asterisk ``chan_websocket``, sans-IO.

Builds what Asterisk sends (``MEDIA_START`` in the plain-text or JSON control format,
BINARY media frames, ``MEDIA_MARK_PROCESSED``, ``MEDIA_XOFF``/``MEDIA_XON``,
``DTMF_END``) and parses what the daemon sends (BINARY audio; ``FLUSH_MEDIA``,
``HANGUP``, ``MARK_MEDIA``, ``ANSWER``, buffering and status commands), following
``reference/telephony.md`` §2 and the daemon's own dialect (``sessions.dialects.asterisk``).

Releases differ (``_create_event_MEDIA_START`` and ``process_text_message`` in
``channels/chan_websocket.c`` at each release tag): 20.16.0, 22.6.0, 23.0.0 and every 21.x
send no ``channel_id``; the JSON control format and ``MARK_MEDIA`` exist only from 20.18.0,
22.8.0 and 23.2.0 (never 21.x), and an older release only logs an unknown command, never
answering it. ``release=`` picks which one is simulated (:func:`release_features`).

Asterisk re-frames the daemon's audio into ``optimal_frame_size`` frames: outside
``START_MEDIA_BUFFERING`` … ``STOP_MEDIA_BUFFERING`` an odd tail is dropped, inside it is
carried over and padded at the stop. Commands over 128 bytes are ignored, as Asterisk does.
"""

from __future__ import annotations

import json

from actors.audio_codec import Encoding, MediaFormat
from actors.errors import CarrierMalformedMessage, CarrierMessageTooBig
from devkit.simcall.events import (
    AssistantAudio,
    ClearRequested,
    DaemonEvent,
    DaemonNotice,
    HangupRequested,
    MarkRequested,
)

SUBPROTOCOL = "media"
MAX_MESSAGE_BYTES = 65_500
MAX_COMMAND_BYTES = 128
FORMATS = {
    "ulaw": MediaFormat(Encoding.MULAW, 8000),
    "slin16": MediaFormat(Encoding.PCM16, 16000),
}
KNOWN_COMMANDS = frozenset(
    {
        "ANSWER",
        "HANGUP",
        "START_MEDIA_BUFFERING",
        "STOP_MEDIA_BUFFERING",
        "FLUSH_MEDIA",
        "PAUSE_MEDIA",
        "CONTINUE_MEDIA",
        "MARK_MEDIA",
        "GET_STATUS",
        "REPORT_QUEUE_DRAINED",
        "SET_MEDIA_DIRECTION",
    }
)
MALFORMED_KINDS = ("bad_control", "oversized", "odd_frame")
"""Broken messages :meth:`AsteriskCaller.malformed` can build (``odd_frame`` is an
odd-length BINARY frame: only malformed for ``slin16``)."""

__all__ = ["FORMATS", "MALFORMED_KINDS", "SUBPROTOCOL", "AsteriskCaller", "release_features"]

LATEST_RELEASE = "23.2.0"


def release_features(release: str) -> tuple[bool, bool]:
    """``(sends channel_id, has JSON control and MARK_MEDIA)`` for an Asterisk release.

    Read from ``channels/chan_websocket.c`` at the release tags: ``channel_id`` joined
    ``MEDIA_START`` in 20.17.0 / 22.7.0 / 23.1.0 (never 21.x); JSON and ``MARK_MEDIA``
    arrived together in 20.18.0 / 22.8.0 / 23.2.0 (never 21.x).
    """
    major, minor = (int(part) for part in release.split(".")[:2])
    if major == 21:
        return False, False
    channel_id_from = {20: 17, 22: 7, 23: 1}.get(major)
    marks_from = {20: 18, 22: 8, 23: 2}.get(major)
    if channel_id_from is None or marks_from is None:
        if major > 23:
            return True, True
        raise ValueError(f"no chan_websocket in Asterisk {release}")
    return minor >= channel_id_from, minor >= marks_from


class AsteriskCaller:
    """One chan_websocket media connection, from Asterisk's side."""

    def __init__(
        self,
        *,
        connection_id: str,
        channel_id: str,
        format_name: str = "ulaw",
        control_json: bool = True,
        channel_variables: dict[str, str] | None = None,
        release: str = LATEST_RELEASE,
    ) -> None:
        if format_name not in FORMATS:
            raise ValueError(f"format {format_name!r}; one of {sorted(FORMATS)}")
        self.release = release
        self.sends_channel_id, self.has_marks = release_features(release)
        if control_json and not self.has_marks:
            raise ValueError(f"Asterisk {release} has no JSON control format")
        self.unknown_commands: list[str] = []
        """Commands this release does not know (Asterisk only logs them)."""
        self.connection_id = connection_id
        self.channel_id = channel_id
        self.channel = f"WebSocket/novavoice-sim-{channel_id}"
        self.format_name = format_name
        self.fmt = FORMATS[format_name]
        self.frame_bytes = self.fmt.bytes_for_ms(20)
        self.control_json = control_json
        self.channel_variables = dict(channel_variables or {})
        self.buffering = False
        self.dropped_tail_bytes = 0
        """Odd tails of daemon audio dropped outside buffering mode (Asterisk drops them)."""
        self._tail = b""

    @property
    def bytes_per_second(self) -> int:
        """Wire bytes per second of audio."""
        return self.fmt.sample_rate * self.fmt.bytes_per_sample

    # --- carrier → daemon -------------------------------------------------------------

    def _event(self, name: str, **fields: object) -> str:
        if self.control_json:
            return json.dumps({"event": name, **fields}, separators=(",", ":"))
        if name in ("MEDIA_MARK_PROCESSED", "MEDIA_BUFFERING_COMPLETED"):
            return f"{name} {fields.get('correlation_id', '')}".rstrip()
        return " ".join([name, *(f"{k}:{v}" for k, v in fields.items())])

    def media_start(self) -> str:
        """``MEDIA_START``: ids, format, frame size, ptime (and variables, JSON only)."""
        fields: dict[str, object] = {
            "connection_id": self.connection_id,
            "channel": self.channel,
        }
        if self.sends_channel_id:
            fields["channel_id"] = self.channel_id
        fields |= {
            "format": self.format_name,
            "optimal_frame_size": self.frame_bytes,
            "ptime": 20,
        }
        if self.control_json:
            fields["channel_variables"] = self.channel_variables
        return self._event("MEDIA_START", **fields)

    def media(self, payload: bytes) -> bytes:
        """One BINARY frame of caller audio (raw codec bytes)."""
        return bytes(payload)

    def mark_processed(self, correlation_id: str) -> str:
        """Playback reached a ``MARK_MEDIA``."""
        return self._event("MEDIA_MARK_PROCESSED", correlation_id=correlation_id)

    def xoff(self) -> str:
        """The playback queue is nearly full: stop sending."""
        return self._event("MEDIA_XOFF")

    def xon(self) -> str:
        """The playback queue drained enough: send again."""
        return self._event("MEDIA_XON")

    def dtmf_end(self, digit: str) -> str:
        """The caller pressed a key."""
        return self._event("DTMF_END", digit=digit)

    def status(self, *, queue_length: int) -> str:
        """Answer to ``GET_STATUS``."""
        return self._event(
            "STATUS",
            queue_length=queue_length,
            xon_level=800,
            xoff_level=900,
            queue_full="false",
            bulk_media="false",
            media_paused="false",
        )

    def malformed(self, kind: str) -> str | bytes:
        """A deliberately broken message of ``kind`` (one of :data:`MALFORMED_KINDS`)."""
        if kind == "bad_control":
            return "{not json" if self.control_json else "media_start lower-case garbage"
        if kind == "oversized":
            return b"\xff" * (MAX_MESSAGE_BYTES + 1)
        if kind == "odd_frame":
            return b"\x00" * (self.frame_bytes - 1)
        raise ValueError(f"unknown malformed kind {kind!r}; one of {MALFORMED_KINDS}")

    # --- daemon → carrier -------------------------------------------------------------

    def receive_bytes(self, data: bytes) -> list[DaemonEvent]:
        """Audio for playback, re-framed the way Asterisk does."""
        if len(data) > MAX_MESSAGE_BYTES:
            raise CarrierMessageTooBig("daemon sent a media frame over 65,500 bytes")
        data = self._tail + data
        whole = len(data) - len(data) % self.frame_bytes
        if self.buffering:
            self._tail = data[whole:]
        else:
            self._tail = b""
            self.dropped_tail_bytes += len(data) - whole
        if not whole:
            return []
        return [AssistantAudio(payload=data[:whole], seconds=whole / self.bytes_per_second)]

    def receive_text(self, text: str) -> list[DaemonEvent]:
        """One command from the daemon (JSON ``{"command": …}`` or plain text)."""
        if len(text.encode()) > MAX_COMMAND_BYTES:
            return [DaemonNotice(name="IGNORED", fields={"reason": "command over 128 bytes"})]
        stripped = text.strip()
        if stripped.startswith("{"):
            try:
                msg = json.loads(stripped)
            except ValueError:
                raise CarrierMalformedMessage("daemon command is not JSON") from None
            if not isinstance(msg, dict) or not isinstance(msg.get("command"), str):
                raise CarrierMalformedMessage("JSON command without 'command'")
            name = msg.pop("command")
            argument = msg.get("correlation_id")
        else:
            name, _, rest = stripped.partition(" ")
            argument = rest.strip() or None
        return self._command(name, argument if isinstance(argument, str) else None)

    def _command(self, name: str, argument: str | None) -> list[DaemonEvent]:
        if name == "FLUSH_MEDIA":
            self._tail = b""
            return [ClearRequested()]
        if name == "HANGUP":
            return [HangupRequested()]
        if name == "MARK_MEDIA" and not self.has_marks:
            # process_text_message before 20.18.0/22.8.0/23.2.0: logged, never answered.
            self.unknown_commands.append(name)
            return [DaemonNotice(name="UNKNOWN_COMMAND", fields={"command": name})]
        if name == "MARK_MEDIA":
            if not argument:
                raise CarrierMalformedMessage("MARK_MEDIA without a correlation id")
            return [MarkRequested(name=argument)]
        if name == "START_MEDIA_BUFFERING":
            self.buffering = True
        elif name == "STOP_MEDIA_BUFFERING" and self.buffering:
            self.buffering = False
            if self._tail:
                pad = self.frame_bytes - len(self._tail)
                fill = b"\xff" if self.fmt.encoding is Encoding.MULAW else b"\x00"
                audio = self._tail + fill * pad
                self._tail = b""
                return [
                    AssistantAudio(payload=audio, seconds=len(audio) / self.bytes_per_second),
                    DaemonNotice(name=name, fields={"correlation_id": argument}),
                ]
        if name not in KNOWN_COMMANDS:
            self.unknown_commands.append(name[:40])
            return [DaemonNotice(name="ERROR", fields={"command": name[:40]})]
        return [DaemonNotice(name=name, fields={"correlation_id": argument})]
