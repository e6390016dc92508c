"""What the Nova Sonic input rules return: one record per accepted event, or a violation.

:class:`~devkit.emulator.rules.EventRules` checks each input event and returns one of these
frozen records (the :data:`InputEvent` union) or a :class:`Violation`; the stream session
acts on them. They are plain data with no rules of their own, so they live apart from the
checker, which re-exports them.
"""

from __future__ import annotations

import attrs

__all__ = [
    "AudioChunk",
    "AudioEnded",
    "AudioStarted",
    "InputEvent",
    "Noted",
    "PromptEnded",
    "PromptStarted",
    "SessionEnded",
    "SessionStarted",
    "TextBlockEnded",
    "ToolResultEnded",
    "Violation",
]


@attrs.frozen
class Violation:
    """The event broke a rule; ``message`` goes into the ``validationException`` frame."""

    message: str


@attrs.frozen(kw_only=True)
class SessionStarted:
    """``sessionStart`` accepted; ``endpointing`` is HIGH/MEDIUM/LOW or None (default)."""

    endpointing: str | None


@attrs.frozen(kw_only=True)
class PromptStarted:
    """``promptStart`` accepted."""

    prompt_name: str
    voice_id: str
    output_sample_rate: int
    tools: tuple[str, ...] = ()
    """Names of the tools ``toolConfiguration`` offers."""


@attrs.frozen(kw_only=True)
class TextBlockEnded:
    """A TEXT block closed: system prompt, history message or cross-modal text."""

    role: str
    interactive: bool
    text: str
    audio_chunks_before: int = 0
    """``audioInput`` events the stream had carried when the block ended (0 for a text
    sent right after the AUDIO block opened: the speaks-first pattern)."""


@attrs.frozen(kw_only=True)
class ToolResultEnded:
    """A TOOL result block closed."""

    tool_use_id: str
    content: str


@attrs.frozen(kw_only=True)
class AudioStarted:
    """The (single) AUDIO block opened."""

    content_name: str
    sample_rate: int


@attrs.frozen
class AudioChunk:
    """Caller PCM16LE mono at the audio block's sample rate."""

    pcm: bytes


@attrs.frozen
class AudioEnded:
    """The AUDIO block closed."""


@attrs.frozen
class PromptEnded:
    """``promptEnd`` accepted."""


@attrs.frozen
class SessionEnded:
    """``sessionEnd`` accepted; nothing may follow."""


@attrs.frozen
class Noted:
    """Accepted, nothing for the conversation to do (a block opened, text buffered)."""


InputEvent = (
    SessionStarted
    | PromptStarted
    | TextBlockEnded
    | ToolResultEnded
    | AudioStarted
    | AudioChunk
    | AudioEnded
    | PromptEnded
    | SessionEnded
    | Noted
)
