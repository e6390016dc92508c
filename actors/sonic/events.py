"""Nova Sonic input events and the Bedrock ``chunk`` wrapping (sans-IO).

Builders return the compact UTF-8 JSON of one Nova Sonic input event (reference
``nova-sonic.md`` §3.2), with keys in the order the official samples and the recorded
vectors use, so they reproduce ``vectors/bedrock-bidi`` ``nova_event_json`` byte for byte.
:func:`encode_input_chunk` wraps such JSON into the inner event-stream message Bedrock
expects (§2.2); the emulator uses :func:`encode_output_chunk`, :func:`encode_exception` and
:func:`encode_error` for what the service sends back (§2.3).

:func:`audio_input` runs for every 20-32 ms of caller audio on every call, so it is built
by byte concatenation around ``base64.b64encode`` instead of ``json.dumps`` of a dict.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs

from actors.errors import LocalProtocolError, RemoteProtocolError
from actors.sonic.eventstream import (
    Header,
    Message,
    encode_headers,
    encode_message,
    encode_with_headers_bytes,
)

__all__ = [
    "DEFAULT_ENDPOINTING",
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_TEMPERATURE",
    "DEFAULT_TOP_P",
    "DEFAULT_VOICE",
    "ENDPOINTING_SENSITIVITIES",
    "SAMPLE_RATES",
    "TEXT_INPUT_LIMIT",
    "VOICES",
    "ToolSpec",
    "audio_content_start",
    "audio_input",
    "chunk_event_json",
    "content_end",
    "cross_modal_text",
    "encode_error",
    "encode_exception",
    "encode_input_chunk",
    "encode_output_chunk",
    "prompt_end",
    "prompt_start",
    "session_end",
    "session_start",
    "split_text",
    "text_content_start",
    "text_input",
    "tool_content_start",
    "tool_result",
    "tool_result_block",
]

SAMPLE_RATES: Final = frozenset({8000, 16000, 24000})
ENDPOINTING_SENSITIVITIES: Final = frozenset({"HIGH", "MEDIUM", "LOW"})
# Nova 2 and v1 voice ids (reference nova-sonic.md §3.7), lowercase as the service expects.
VOICES: Final = frozenset(
    {
        "matthew", "tiffany", "amy", "olivia", "kiara", "arjun", "ambre", "florian",
        "beatrice", "lorenzo", "tina", "greta", "lennart", "lupe", "carlos", "carolina", "leo",
    }
)  # fmt: skip
TEXT_ROLES: Final = frozenset({"SYSTEM", "USER", "ASSISTANT", "SYSTEM_SPEECH"})
# The defaults of a session, written here once (the daemon's settings take them from here).
DEFAULT_VOICE: Final = "matthew"
DEFAULT_MAX_TOKENS: Final = 1024
DEFAULT_TOP_P: Final = 0.9
DEFAULT_TEMPERATURE: Final = 0.7
DEFAULT_ENDPOINTING: Final = "MEDIUM"
TEXT_INPUT_LIMIT: Final = 1024

# Constant header blocks, encoded once: the inner message of every input event, and what
# the service puts on every output chunk (orders as recorded from the SDK and its server).
_INPUT_CHUNK_HEADERS: Final = encode_headers(
    [
        Header.string(":message-type", "event"),
        Header.string(":event-type", "chunk"),
        Header.string(":content-type", "application/json"),
    ]
)
_OUTPUT_CHUNK_HEADERS: Final = encode_headers(
    [
        Header.string(":event-type", "chunk"),
        Header.string(":content-type", "application/json"),
        Header.string(":message-type", "event"),
    ]
)
# Names that need no JSON escaping can be spliced in as they are (UUIDs always qualify).
_PLAIN_NAME: Final = re.compile(r"[A-Za-z0-9 ._:/+=@-]*")


def _json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _event(name: str, body: Mapping[str, object]) -> bytes:
    return _json({"event": {name: body}})


def _json_string(value: str) -> bytes:
    if _PLAIN_NAME.fullmatch(value):
        return b'"' + value.encode("ascii") + b'"'
    return _json(value)


def _check_rate(sample_rate: int) -> None:
    if sample_rate not in SAMPLE_RATES:
        raise LocalProtocolError(f"sample rate {sample_rate} not in {sorted(SAMPLE_RATES)}")


# --- Bedrock chunk wrapping -------------------------------------------------------------


def encode_input_chunk(nova_event_json: bytes) -> bytes:
    """The inner message for one Nova input event: ``{"bytes":"<base64>"}`` as a chunk."""
    payload = b'{"bytes":"' + base64.b64encode(nova_event_json) + b'"}'
    return encode_with_headers_bytes(_INPUT_CHUNK_HEADERS, payload)


def encode_output_chunk(nova_event_json: bytes) -> bytes:
    """What the service sends for one Nova output event (for the emulator)."""
    payload = b'{"bytes":"' + base64.b64encode(nova_event_json) + b'"}'
    return encode_with_headers_bytes(_OUTPUT_CHUNK_HEADERS, payload)


def encode_exception(exception_type: str, message: str, **extra: object) -> bytes:
    """A modeled in-stream exception frame, e.g. ``throttlingException`` (for the emulator).

    ``extra`` adds members after ``message`` (``originalStatusCode``, ``originalMessage``
    for ``modelStreamErrorException``).
    """
    return encode_message(
        [
            Header.string(":exception-type", exception_type),
            Header.string(":content-type", "application/json"),
            Header.string(":message-type", "exception"),
        ],
        _json({"message": message, **extra}),
    )


def encode_error(error_code: str, error_message: str) -> bytes:
    """An unmodeled ``:message-type error`` frame (for the emulator)."""
    return encode_message(
        [
            Header.string(":message-type", "error"),
            Header.string(":error-code", error_code),
            Header.string(":error-message", error_message),
        ],
        b"",
    )


def chunk_event_json(message: Message) -> bytes:
    """The Nova event JSON carried by a ``chunk`` message (base64 ``bytes`` member decoded).

    Other members next to ``bytes`` are ignored, as the SDK does.
    """
    payload = message.payload
    if payload.startswith(b'{"bytes":"') and payload.endswith(b'"}'):
        # Fast path for the compact form the service sends: base64 has no '"' or '\\', so
        # the slice is the whole string value; anything odd falls through to the JSON path.
        try:
            return binascii.a2b_base64(payload[10:-2], strict_mode=True)
        except binascii.Error:
            pass
    try:
        body = json.loads(payload)
        encoded = body["bytes"]
        if not isinstance(encoded, str):
            raise TypeError("bytes member is not a string")
        return binascii.a2b_base64(encoded, strict_mode=True)
    except (ValueError, TypeError, KeyError, RecursionError, binascii.Error) as exc:
        raise RemoteProtocolError(f"malformed chunk payload: {exc}") from exc


# --- input event builders ------------------------------------------------------------------


def session_start(
    *,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    top_p: float = DEFAULT_TOP_P,
    temperature: float = DEFAULT_TEMPERATURE,
    endpointing_sensitivity: str | None = DEFAULT_ENDPOINTING,
) -> bytes:
    """``sessionStart``; ``endpointing_sensitivity`` None omits turn detection (Nova v1)."""
    body: dict[str, object] = {
        "inferenceConfiguration": {
            "maxTokens": max_tokens,
            "topP": top_p,
            "temperature": temperature,
        }
    }
    if endpointing_sensitivity is not None:
        if endpointing_sensitivity not in ENDPOINTING_SENSITIVITIES:
            raise LocalProtocolError(f"endpointing sensitivity {endpointing_sensitivity!r}")
        body["turnDetectionConfiguration"] = {"endpointingSensitivity": endpointing_sensitivity}
    return _event("sessionStart", body)


@attrs.frozen(kw_only=True)
class ToolSpec:
    """A tool offered to the model; ``input_schema`` is a JSON Schema (dict or JSON text)."""

    name: str
    description: str
    input_schema: Mapping[str, Any] | str

    def to_json_obj(self) -> dict[str, object]:
        """The ``toolSpec`` member of ``toolConfiguration.tools`` (schema as a string)."""
        schema = self.input_schema
        if not isinstance(schema, str):
            schema = json.dumps(schema, separators=(",", ":"))
        return {
            "toolSpec": {
                "name": self.name,
                "description": self.description,
                "inputSchema": {"json": schema},
            }
        }


def prompt_start(
    *,
    prompt_name: str,
    voice_id: str,
    output_sample_rate: int,
    tools: Sequence[ToolSpec] = (),
) -> bytes:
    """``promptStart``: text and audio output configuration, and tools if any."""
    _check_rate(output_sample_rate)
    body: dict[str, object] = {
        "promptName": prompt_name,
        "textOutputConfiguration": {"mediaType": "text/plain"},
        "audioOutputConfiguration": {
            "mediaType": "audio/lpcm",
            "sampleRateHertz": output_sample_rate,
            "sampleSizeBits": 16,
            "channelCount": 1,
            "voiceId": voice_id,
            "encoding": "base64",
            "audioType": "SPEECH",
        },
    }
    if tools:
        body["toolUseOutputConfiguration"] = {"mediaType": "application/json"}
        # toolChoice "auto" (the documented default, written out as Bedrock's Converse API
        # spells it): the model decides whether and which tools to call.
        body["toolConfiguration"] = {
            "tools": [tool.to_json_obj() for tool in tools],
            "toolChoice": {"auto": {}},
        }
    return _event("promptStart", body)


def text_content_start(
    *, prompt_name: str, content_name: str, role: str, interactive: bool
) -> bytes:
    """``contentStart`` of a TEXT block (system prompt, history, or cross-modal user text)."""
    if role not in TEXT_ROLES:
        raise LocalProtocolError(f"text role {role!r} not in {sorted(TEXT_ROLES)}")
    return _event(
        "contentStart",
        {
            "promptName": prompt_name,
            "contentName": content_name,
            "type": "TEXT",
            "interactive": interactive,
            "role": role,
            "textInputConfiguration": {"mediaType": "text/plain"},
        },
    )


def text_input(*, prompt_name: str, content_name: str, content: str) -> bytes:
    """``textInput``; keep ``content`` within :data:`TEXT_INPUT_LIMIT` (see :func:`split_text`)."""
    return _event(
        "textInput",
        {"promptName": prompt_name, "contentName": content_name, "content": content},
    )


def audio_content_start(*, prompt_name: str, content_name: str, sample_rate: int) -> bytes:
    """``contentStart`` of the one AUDIO block (role USER, interactive, LPCM 16-bit mono)."""
    _check_rate(sample_rate)
    return _event(
        "contentStart",
        {
            "promptName": prompt_name,
            "contentName": content_name,
            "type": "AUDIO",
            "interactive": True,
            "role": "USER",
            "audioInputConfiguration": {
                "mediaType": "audio/lpcm",
                "sampleRateHertz": sample_rate,
                "sampleSizeBits": 16,
                "channelCount": 1,
                "audioType": "SPEECH",
                "encoding": "base64",
            },
        },
    )


def audio_input(*, prompt_name: str, content_name: str, pcm: bytes) -> bytes:
    """``audioInput`` carrying base64 of PCM16LE mono (hot path: no json.dumps)."""
    return b"".join(
        (
            b'{"event":{"audioInput":{"promptName":',
            _json_string(prompt_name),
            b',"contentName":',
            _json_string(content_name),
            b',"content":"',
            base64.b64encode(pcm),
            b'"}}}',
        )
    )


def tool_content_start(*, prompt_name: str, content_name: str, tool_use_id: str) -> bytes:
    """``contentStart`` of a TOOL result block answering ``tool_use_id``."""
    return _event(
        "contentStart",
        {
            "promptName": prompt_name,
            "contentName": content_name,
            "type": "TOOL",
            "interactive": False,
            "role": "TOOL",
            "toolResultInputConfiguration": {
                "toolUseId": tool_use_id,
                "type": "TEXT",
                "textInputConfiguration": {"mediaType": "text/plain"},
            },
        },
    )


def tool_result(*, prompt_name: str, content_name: str, content: str) -> bytes:
    """``toolResult``: ``content`` is the stringified JSON result (errors included)."""
    return _event(
        "toolResult",
        {"promptName": prompt_name, "contentName": content_name, "content": content},
    )


def cross_modal_text(*, prompt_name: str, content_name: str, text: str) -> list[bytes]:
    """The events of one cross-modal USER text block (Nova 2), in send order.

    ``contentStart`` (TEXT, role USER, ``interactive: true`` as the cross-modal page and AWS's
    speaks-first sample send it), one ``textInput`` per :func:`split_text` piece, then
    ``contentEnd``. Send them back to back: no ``audioInput`` may come between them.
    """
    if not text:
        raise LocalProtocolError("cross-modal text must not be empty")
    out = [
        text_content_start(
            prompt_name=prompt_name, content_name=content_name, role="USER", interactive=True
        )
    ]
    out.extend(
        text_input(prompt_name=prompt_name, content_name=content_name, content=piece)
        for piece in split_text(text)
    )
    out.append(content_end(prompt_name=prompt_name, content_name=content_name))
    return out


def tool_result_block(
    *, prompt_name: str, content_name: str, tool_use_id: str, content: str
) -> list[bytes]:
    """The events answering one ``toolUse``: TOOL ``contentStart``, ``toolResult``,
    ``contentEnd``, in send order (one result per tool use; errors are results too)."""
    return [
        tool_content_start(
            prompt_name=prompt_name, content_name=content_name, tool_use_id=tool_use_id
        ),
        tool_result(prompt_name=prompt_name, content_name=content_name, content=content),
        content_end(prompt_name=prompt_name, content_name=content_name),
    ]


def content_end(*, prompt_name: str, content_name: str) -> bytes:
    """``contentEnd`` of any block."""
    return _event("contentEnd", {"promptName": prompt_name, "contentName": content_name})


def prompt_end(*, prompt_name: str) -> bytes:
    """``promptEnd``."""
    return _event("promptEnd", {"promptName": prompt_name})


def session_end() -> bytes:
    """``sessionEnd`` (an empty object)."""
    return _event("sessionEnd", {})


def split_text(text: str, limit: int = TEXT_INPUT_LIMIT) -> list[str]:
    """Split ``text`` into pieces of at most ``limit`` UTF-8 bytes, never inside a character.

    A piece ends after the last whitespace of its window when that keeps it at least half
    full, so words stay whole where possible. ``"".join(pieces) == text`` always holds (an
    empty text gives no pieces).
    """
    if limit < 4:
        raise LocalProtocolError("split_text limit must hold any UTF-8 character (>= 4 bytes)")
    raw = text.encode("utf-8")
    pieces: list[str] = []
    start = 0
    while len(raw) - start > limit:
        cut = start + limit
        while raw[cut] & 0xC0 == 0x80:  # never split a multi-byte character
            cut -= 1
        space = max(raw.rfind(b" ", start, cut), raw.rfind(b"\n", start, cut))
        if space + 1 - start >= limit // 2:
            cut = space + 1
        pieces.append(raw[start:cut].decode("utf-8"))
        start = cut
    if start < len(raw):
        pieces.append(raw[start:].decode("utf-8"))
    return pieces
