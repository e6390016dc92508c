"""What the prompt cache needs from a prompt store, and the records a store returns.

A store answers one question, "give me assistant X's prompt, unless it still has ETag E",
with either a :class:`StoredPrompt` or :class:`NotModified`, or raises a
:class:`~actors.errors.PromptError`. The S3 implementation lives in
:mod:`actors.s3_prompt_store`; :mod:`devkit.fake_prompt_store` is the in-memory stand-in
the actor tests drive with the autojump clock.
"""

from __future__ import annotations

from typing import Protocol

import attrs

from actors.assistant_definition import AssistantDefinition, validate_definition
from actors.errors import PromptInvalid

DEFAULT_MAX_PROMPT_BYTES = 64 * 1024
"""Largest prompt accepted by default (64 KiB): far above any sensible system prompt, far
below what would hurt if a wrong object were uploaded under an assistant's key."""


@attrs.frozen(kw_only=True)
class StoredPrompt:
    """One version of an assistant's system prompt, as read from the store."""

    assistant: str
    """The assistant name (already validated)."""
    key: str
    """The object key it was read from."""
    text: str = attrs.field(repr=False)
    """The prompt itself. Kept out of ``repr`` so it never lands in a log line."""
    etag: str
    """The object's ETag, quotes included, as S3 returns it; sent back as ``If-None-Match``."""
    version_id: str | None = None
    """The S3 VersionId when the bucket is versioned, else ``None``."""
    size: int = 0
    """Size of the object in bytes."""
    definition: AssistantDefinition = attrs.field(
        repr=False,
        eq=False,
        default=attrs.Factory(lambda self: _definition_of(self), takes_self=True),
    )
    """The parsed definition (prompt and per-assistant settings). Stores pass the one
    :func:`decode_definition` returned; built from ``text`` when left out (test fakes)."""


def _definition_of(prompt: StoredPrompt) -> AssistantDefinition:
    raw = prompt.text.encode("utf-8")
    _, definition = decode_definition(
        raw, assistant=prompt.assistant, key=prompt.key, max_bytes=len(raw)
    )
    return definition


@attrs.frozen(kw_only=True)
class NotModified:
    """A conditional read found the prompt unchanged (HTTP 304): no body was transferred."""

    assistant: str
    """The assistant name."""
    key: str
    """The object key."""
    etag: str
    """The ETag that still matches."""


class PromptStore(Protocol):
    """Where prompts come from. Implementations raise only :class:`~actors.errors.PromptError`."""

    async def fetch(
        self, assistant: str, *, if_none_match: str | None = None
    ) -> StoredPrompt | NotModified:
        """Read ``assistant``'s prompt; return :class:`NotModified` if its ETag still equals
        ``if_none_match``."""
        ...


def decode_prompt(raw: bytes, *, assistant: str, key: str, max_bytes: int) -> str:
    """Turn an object body into prompt text, or raise :class:`~actors.errors.PromptInvalid`.

    A prompt must be non-empty (after whitespace), valid UTF-8 and at most ``max_bytes``.
    The error names the assistant and key, never any of the content.
    """
    if len(raw) > max_bytes:
        raise PromptInvalid(
            f"prompt for assistant {assistant!r} at {key!r} is larger than {max_bytes} bytes",
            assistant=assistant,
            key=key,
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PromptInvalid(
            f"prompt for assistant {assistant!r} at {key!r} is not valid UTF-8 "
            f"(bad byte at offset {exc.start})",
            assistant=assistant,
            key=key,
        ) from None
    if not text.strip():
        raise PromptInvalid(
            f"prompt for assistant {assistant!r} at {key!r} is empty",
            assistant=assistant,
            key=key,
        )
    return text


def decode_definition(
    raw: bytes, *, assistant: str, key: str, max_bytes: int
) -> tuple[str, AssistantDefinition]:
    """Decode an object body and parse it as an assistant definition.

    The daemon's guard: the same :func:`~actors.assistant_definition.validate_definition`
    the prompt admin runs before publishing. Any error raises
    :class:`~actors.errors.PromptInvalid` naming the rule, line and column (never the
    content); warnings do not stop a call. Returns the whole text and the definition.
    """
    text = decode_prompt(raw, assistant=assistant, key=key, max_bytes=max_bytes)
    definition, report = validate_definition(raw, max_bytes=max_bytes)
    if definition is None:
        first = report.errors[0]
        raise PromptInvalid(
            f"definition for assistant {assistant!r} at {key!r} is invalid: {first.code} at "
            f"line {first.line}, column {first.column} ({len(report.errors)} error(s))",
            assistant=assistant,
            key=key,
        )
    return text, definition
