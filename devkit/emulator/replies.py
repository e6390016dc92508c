"""Builders of the Nova Sonic *output* event JSON the emulator sends (reference §3.3–§3.4).

Each returns the compact UTF-8 JSON of one ``{"event": {...}}``; the server wraps it in a
Bedrock chunk frame. Field names and shapes follow the Nova 2 output-events page; note that
``additionalModelFields`` is a JSON *string*, as the service sends it.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import attrs

__all__ = ["BARGE_IN_CONTENT", "ReplyIds"]

BARGE_IN_CONTENT = '{ "interrupted" : true }'


def _dump(name: str, body: dict[str, Any]) -> bytes:
    return json.dumps({"event": {name: body}}, separators=(",", ":")).encode()


@attrs.frozen(kw_only=True)
class ReplyIds:
    """Identifiers every output event of one completion carries."""

    session_id: str
    prompt_name: str
    completion_id: str

    def _ids(self) -> dict[str, Any]:
        return {
            "sessionId": self.session_id,
            "promptName": self.prompt_name,
            "completionId": self.completion_id,
        }

    def completion_start(self) -> bytes:
        """``completionStart``: identifiers only."""
        return _dump("completionStart", self._ids())

    def text_start(self, *, content_id: str, role: str, stage: str) -> bytes:
        """TEXT ``contentStart`` for ``role`` with generation stage FINAL or SPECULATIVE."""
        return _dump(
            "contentStart",
            {
                **self._ids(),
                "contentId": content_id,
                "type": "TEXT",
                "role": role,
                "additionalModelFields": json.dumps({"generationStage": stage}),
                "textOutputConfiguration": {"mediaType": "text/plain"},
            },
        )

    def text_output(self, *, content_id: str, role: str, content: str) -> bytes:
        """``textOutput`` (a transcript, a preview, or the barge-in signal)."""
        return _dump(
            "textOutput", {**self._ids(), "contentId": content_id, "role": role, "content": content}
        )

    def audio_start(self, *, content_id: str, sample_rate: int) -> bytes:
        """AUDIO ``contentStart`` of the assistant's speech."""
        return _dump(
            "contentStart",
            {
                **self._ids(),
                "contentId": content_id,
                "type": "AUDIO",
                "role": "ASSISTANT",
                "audioOutputConfiguration": {
                    "mediaType": "audio/lpcm",
                    "sampleRateHertz": sample_rate,
                    "sampleSizeBits": 16,
                    "channelCount": 1,
                    "encoding": "base64",
                },
            },
        )

    def audio_output(self, *, content_id: str, pcm: bytes) -> bytes:
        """``audioOutput`` carrying base64 PCM16LE."""
        return _dump(
            "audioOutput",
            {**self._ids(), "contentId": content_id, "content": base64.b64encode(pcm).decode()},
        )

    def content_end(self, *, content_id: str, kind: str, stop_reason: str) -> bytes:
        """``contentEnd`` of a TEXT or AUDIO block with its stop reason."""
        return _dump(
            "contentEnd",
            {**self._ids(), "contentId": content_id, "type": kind, "stopReason": stop_reason},
        )

    def completion_end(self, *, stop_reason: str) -> bytes:
        """``completionEnd`` closing the completion."""
        return _dump("completionEnd", {**self._ids(), "stopReason": stop_reason})

    def usage(
        self,
        *,
        delta: tuple[int, int, int, int],
        total: tuple[int, int, int, int],
    ) -> bytes:
        """``usageEvent``; tuples are (input speech, input text, output speech, output text)."""

        def block(v: tuple[int, int, int, int]) -> dict[str, Any]:
            return {
                "input": {"speechTokens": v[0], "textTokens": v[1]},
                "output": {"speechTokens": v[2], "textTokens": v[3]},
            }

        return _dump(
            "usageEvent",
            {
                **self._ids(),
                "details": {"delta": block(delta), "total": block(total)},
                "totalInputTokens": total[0] + total[1],
                "totalOutputTokens": total[2] + total[3],
                "totalTokens": sum(total),
            },
        )
