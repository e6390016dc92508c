"""The assistant naming rule, and the only way an assistant name becomes an S3 key.

Rule: an assistant name is 1 to 64 characters of lowercase ASCII letters ``a-z``, digits
``0-9`` and hyphens ``-``; it neither starts nor ends with a hyphen and never holds two
hyphens in a row. Examples: ``esther``, ``support-agent``, ``tier2-billing``.

The rule is deliberately an allow-list rather than a list of dangerous characters: a name
that passes cannot contain ``/``, ``\\``, ``.``, ``%``, NUL, whitespace or any non-ASCII
look-alike (Cyrillic ``е``, fullwidth ``ｅ``), so it cannot climb out of the prompts prefix,
smuggle an extension (``esther.md``) or alias another assistant. Names are refused, never
"cleaned": normalising ``Esther`` to ``esther`` would let two spellings share a prompt.

The rule is checked once per call, where the call learns its assistant
(:mod:`sessions.call`, from the upgrade path, the carrier's start parameters or
``DEFAULT_ASSISTANT``, itself checked at start-up). :func:`validate_assistant_name` is the
only producer of :data:`AssistantName`, so every later layer (prompt fetch, cache, store)
takes the validated type and does not check again. The one exception is deliberate: the
store builds keys only through :func:`prompt_key`, which applies the same rule, so no
string, however it got there, can address an object outside the prefix.
"""

from __future__ import annotations

import re
from typing import NewType

from actors.errors import InvalidAssistantName

AssistantName = NewType("AssistantName", str)
"""An assistant name that follows the naming rule; made only by
:func:`validate_assistant_name`."""

MAX_NAME_LENGTH = 64
"""Longest accepted assistant name, in characters."""

PROMPT_SUFFIX = ".md"
"""Every prompt object is ``<prefix><name>.md``."""

# Literal ASCII classes only; fullmatch so a trailing newline cannot slip past ``$``.
_NAME_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")

# How much of a refused name we echo back: enough to recognise it, never a log flood.
_ECHO_LIMIT = 40


def _describe(name: str) -> str:
    shown = name if len(name) <= _ECHO_LIMIT else name[:_ECHO_LIMIT] + "..."
    # ascii() escapes control characters and look-alikes, so a log line shows what was sent.
    return ascii(shown)


def validate_assistant_name(name: object) -> AssistantName:
    """Return ``name`` unchanged if it follows the naming rule, else raise.

    Raises :class:`~actors.errors.InvalidAssistantName` naming the (escaped, truncated)
    input and the reason, before anything touches S3.
    """
    if not isinstance(name, str):
        raise InvalidAssistantName(
            f"assistant name must be a string, not {type(name).__name__}", assistant=repr(name)
        )
    shown = _describe(name)
    if not name:
        reason = "is empty"
    elif len(name) > MAX_NAME_LENGTH:
        reason = f"is {len(name)} characters long (at most {MAX_NAME_LENGTH})"
    elif _NAME_RE.fullmatch(name) is None:
        reason = (
            "must be lowercase letters a-z, digits and single hyphens, "
            "not starting or ending with a hyphen"
        )
    else:
        return AssistantName(name)
    raise InvalidAssistantName(f"assistant name {shown} {reason}", assistant=shown)


def prompt_key(prefix: str, name: str) -> str:
    """The S3 key of assistant ``name``'s prompt under ``prefix``.

    Validates ``name`` again on purpose: this is the store's own refusal of any key outside
    the prefix, whatever a caller passes.
    """
    return f"{prefix}{validate_assistant_name(name)}{PROMPT_SUFFIX}"
