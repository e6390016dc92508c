"""The assistant definition: what ``assistants/<name>.md`` holds, and the one validator.

An assistant's object is a UTF-8 text file. It is either **only the prompt** (every file
written before definitions existed keeps working unchanged) or **YAML front matter plus the
prompt**::

    ---
    voice: tiffany
    endpointing: HIGH
    temperature: 0.5
    ---
    You are Esther, the receptionist of ...

Front matter is recognised only when the very first line is exactly ``---`` (after an optional
UTF-8 byte-order mark); it ends at the next line that is exactly ``---``. Everything after
that line is the prompt, byte for byte.

Content rules (each an **error**; :func:`validate_definition` reports every one it finds,
each with a 1-based line and column in the whole file, columns counted in characters):

* ``not_utf8`` — the bytes are not UTF-8 (a leading byte-order mark is allowed and ignored);
* ``empty`` / ``empty_prompt`` — the file, or the prompt after the front matter, is blank;
* ``too_large`` — the file is larger than ``max_bytes`` (the daemon's ``PROMPT_MAX_BYTES``);
* ``control_character`` — any Unicode control character (category Cc) other than newline
  and tab; a carriage return is accepted only as part of a CRLF line end (browsers submit
  form text with CRLF);
* ``unfilled_placeholder`` — a template placeholder left in, ``{{ ... }}`` or ``{% ... %}``:
  the model would read it aloud;
* ``front_matter_unclosed``, ``yaml_syntax``, ``front_matter_not_mapping``,
  ``duplicate_key``, ``unknown_key``, ``invalid_type``, ``out_of_range``, ``invalid_value``,
  ``missing_key`` — the front matter is not a mapping of the known keys with valid values.

Front matter keys (all optional; a missing key means "the daemon's default"):

============== ==================================================================
``voice``       a Nova Sonic voice id (:data:`actors.sonic.events.VOICES`)
``endpointing`` ``HIGH``, ``MEDIUM`` or ``LOW`` (turn-taking sensitivity, Nova 2)
``temperature`` a number from 0.0 to 1.0 (nova-sonic.md §3.2)
``top_p``       a number from 0.0 to 1.0 (nova-sonic.md §3.2)
``max_tokens``  an integer from 1 to 10000 (the range LiveKit validates, §3.2)
``language``    a locale Nova Sonic speaks (:data:`LANGUAGES`); Sonic's events have no
                language field, so the daemon applies it as one instruction appended to
                the system prompt (:func:`language_instruction`)
``greeting``    what the assistant says first: the daemon asks the model to say it as
                soon as the call's stream is open (Nova 2's speaks-first pattern, a
                cross-modal text, never a recording), at most :data:`GREETING_MAX_CHARS`
                characters
``tools``       a list of tools (:mod:`actors.assistant_tools`), offered to the model in
                ``promptStart.toolConfiguration``
``dtmf``        how keypad digits are collected into one entry before they reach the
                model as text (:mod:`actors.keypad`): a mapping of ``terminator``
                (``"#"``, ``"*"`` or ``""``; default ``"#"``), ``inter_digit_timeout_ms``
                (500 to 10000, default 2000) and ``max_digits`` (1 to 64, default 16)
============== ==================================================================

Lint **warnings** (publishing is still allowed) flag what hurts a *voice* model: markdown
tables and fenced code blocks (read aloud symbol by symbol), a prompt longer than
:data:`PROMPT_LONG_CHARS` characters (sent again on every stream rotation, and slows the
first answer), and a voice that does not speak the chosen ``language``.

This module is sans-IO (no trio, no boto3): the CLI, the admin API, the web page and, as a
guard, the daemon's prompt path all call :func:`validate_definition`. The front matter's
keys, value tables and YAML checks are in :mod:`actors.definition_front_matter`; the tables
are re-exported here.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any, Final

import attrs
import yaml

from actors.assistant_tools import TOOL_KINDS, ToolKind, ToolSpec
from actors.definition_front_matter import (
    FRONT_MATTER_KEYS,
    GREETING_MAX_CHARS,
    LANGUAGES,
    MAX_TOKENS_RANGE,
    Endpointing,
    parse_front_matter,
)
from actors.definition_issues import (
    DefinitionIssue,
    IssueCollector,
    TextPositions,
    ValidationReport,
)
from actors.keypad import DtmfPolicy

__all__ = [
    "FRONT_MATTER_KEYS",
    "GREETING_MAX_CHARS",
    "LANGUAGES",
    "MAX_TOKENS_RANGE",
    "PROMPT_LONG_CHARS",
    "TOOL_KINDS",
    "AssistantDefinition",
    "DefinitionIssue",
    "ToolKind",
    "ToolSpec",
    "ValidationReport",
    "language_instruction",
    "render_definition",
    "validate_definition",
]

# Which locales each voice speaks (nova-sonic.md §3.7). matthew and tiffany are polyglot in
# Nova 2, so they fit every language.
_VOICE_LOCALES: Final[Mapping[str, frozenset[str]]] = {
    "matthew": frozenset(LANGUAGES),
    "tiffany": frozenset(LANGUAGES),
    "amy": frozenset({"en-GB"}),
    "olivia": frozenset({"en-AU"}),
    "kiara": frozenset({"en-IN", "hi-IN"}),
    "arjun": frozenset({"en-IN", "hi-IN"}),
    "ambre": frozenset({"fr-FR"}),
    "florian": frozenset({"fr-FR"}),
    "beatrice": frozenset({"it-IT"}),
    "lorenzo": frozenset({"it-IT"}),
    "tina": frozenset({"de-DE"}),
    "greta": frozenset({"de-DE"}),
    "lennart": frozenset({"de-DE"}),
    "lupe": frozenset({"es-US"}),
    "carlos": frozenset({"es-US"}),
    "carolina": frozenset({"pt-BR"}),
    "leo": frozenset({"pt-BR"}),
}

PROMPT_LONG_CHARS: Final = 8000
"""Prompts longer than this (about 2,000 tokens) get a ``prompt_too_long`` warning."""

_PLACEHOLDER_RE: Final = re.compile(r"\{\{[^\n]*?\}\}|\{%[^\n]*?%\}")
_FENCE_RE: Final = re.compile(r"[ ]{0,3}(```|~~~)")
_TABLE_SEPARATOR_RE: Final = re.compile(r"\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)+\|?\s*")


# --- the records ------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class AssistantDefinition:
    """A validated assistant: its prompt and the per-call settings it overrides.

    ``None`` means "not set here: use the daemon's default".
    """

    prompt: str = attrs.field(repr=False)
    """The system prompt: everything after the front matter (the whole file without it)."""
    voice: str | None = None
    endpointing: Endpointing | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    language: str | None = None
    greeting: str | None = attrs.field(default=None, repr=False)
    tools: tuple[ToolSpec, ...] = ()
    dtmf: DtmfPolicy | None = None
    """How keypad digits are collected (``None``: :data:`actors.keypad.DEFAULT_POLICY`)."""

    def front_matter(self) -> dict[str, object]:
        """The settings that are set, as JSON-ready values, in :data:`FRONT_MATTER_KEYS` order."""
        out: dict[str, object] = {}
        for key in FRONT_MATTER_KEYS:
            value = getattr(self, key)
            if key == "tools":
                if value:
                    out[key] = [tool.to_json() for tool in value]
            elif key == "dtmf":
                if value is not None:
                    out[key] = value.to_json()
            elif value is not None:
                out[key] = value
        return out

    def system_prompt(self) -> str:
        """What the daemon sends as the SYSTEM text: the prompt, plus the language line."""
        if self.language is None:
            return self.prompt
        return self.prompt.rstrip("\n") + "\n\n" + language_instruction(self.language) + "\n"


def language_instruction(language: str) -> str:
    """The sentence appended to the system prompt for ``language`` (a :data:`LANGUAGES` key).

    Nova Sonic's events carry no language field; AWS's guidance is to ask for the language
    in the system prompt and pick a voice that speaks it.
    """
    return f"Always speak {LANGUAGES[language]} ({language}), whatever language the caller uses."


def render_definition(definition: AssistantDefinition) -> str:
    """Write ``definition`` as file text that :func:`validate_definition` reads back equal.

    Without settings the file is just the prompt (the pre-definition format), unless the
    prompt itself would read as front matter (its first line is ``---``) or lose a leading
    byte-order mark: then an empty front matter comes first.
    """
    settings = definition.front_matter()
    prompt = definition.prompt
    if not settings:
        first_line = prompt.split("\n", 1)[0].rstrip("\r")
        if first_line == "---" or prompt.startswith("\ufeff"):
            return f"---\n---\n{prompt}"
        return prompt
    dumped = yaml.safe_dump(
        settings, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1000
    )
    return f"---\n{dumped}---\n{definition.prompt}"


# --- validation ---------------------------------------------------------------------------


def validate_definition(
    raw: bytes, *, max_bytes: int
) -> tuple[AssistantDefinition | None, ValidationReport]:
    """Check ``raw`` against the content rules; return the definition (``None`` if any error)
    and the report of every error and warning, each with line and column.

    This is the only validator: the daemon, the CLI, the admin API and the web page call it.
    """
    out = IssueCollector()
    if len(raw) > max_bytes:
        out.error("too_large", f"the file is {len(raw)} bytes, more than {max_bytes}", 1, 1)
        return None, out.report()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        good = raw[: exc.start].decode("utf-8")
        line, column = TextPositions(good).at(len(good))
        out.error(
            "not_utf8",
            f"byte 0x{raw[exc.start]:02x} at offset {exc.start} is not valid UTF-8",
            line,
            column,
        )
        return None, out.report()
    # A byte-order mark is not content (the daemon has always accepted one).
    text = text.removeprefix("\ufeff")
    if not text.strip():
        out.error("empty", "the file is empty", 1, 1)
        return None, out.report()
    pos = TextPositions(text)
    _check_characters(text, pos, out)

    settings: dict[str, Any] = {}
    prompt_offset = 0
    lines = text.split("\n")
    if lines[0].rstrip("\r") == "---":
        close = next((i for i in range(1, len(lines)) if lines[i].rstrip("\r") == "---"), None)
        if close is None:
            out.error(
                "front_matter_unclosed",
                "front matter opened with '---' on line 1 is never closed by a '---' line",
                1,
                1,
            )
            return None, out.report()
        front = "\n".join(lines[1:close]) + "\n"
        prompt_offset = pos.line_start(close + 2) if close + 1 < len(lines) else len(text)
        settings = parse_front_matter(front, out, first_line=2)
    prompt = text[prompt_offset:]
    if not prompt.strip():
        line, column = pos.at(prompt_offset)
        out.error("empty_prompt", "the prompt after the front matter is empty", line, column)
    else:
        _lint_prompt(text, prompt_offset, pos, out)
    _lint_settings(settings, out)
    if out.has_errors:
        return None, out.report()
    definition = AssistantDefinition(
        prompt=prompt,
        voice=settings.get("voice"),
        endpointing=settings.get("endpointing"),
        temperature=settings.get("temperature"),
        top_p=settings.get("top_p"),
        max_tokens=settings.get("max_tokens"),
        language=settings.get("language"),
        greeting=settings.get("greeting"),
        tools=tuple(settings.get("tools", ())),
        dtmf=settings.get("dtmf"),
    )
    return definition, out.report()


def _check_characters(text: str, pos: TextPositions, out: IssueCollector) -> None:
    for index, char in enumerate(text):
        if char in "\n\t" or unicodedata.category(char) != "Cc":
            continue
        if char == "\r" and text.startswith("\n", index + 1):
            continue
        line, column = pos.at(index)
        out.error(
            "control_character",
            f"control character U+{ord(char):04X} is not allowed (only newline and tab)",
            line,
            column,
        )
    for match in _PLACEHOLDER_RE.finditer(text):
        line, column = pos.at(match.start())
        shown = match.group()[:40]
        out.error(
            "unfilled_placeholder",
            f"unfilled template placeholder {shown!r}: the model would read it aloud",
            line,
            column,
        )


def _lint_prompt(text: str, start: int, pos: TextPositions, out: IssueCollector) -> None:
    first_line, _ = pos.at(start)
    body_lines = text[start:].split("\n")
    in_fence = False
    for i, line_text in enumerate(body_lines):
        line = first_line + i
        if _FENCE_RE.match(line_text):
            if not in_fence:
                out.warning(
                    "code_block",
                    "a fenced code block would be read aloud symbol by symbol; "
                    "describe it in words",
                    line,
                    1,
                )
            in_fence = not in_fence
        elif (
            not in_fence
            and i > 0
            and "|" in body_lines[i - 1]
            and _TABLE_SEPARATOR_RE.fullmatch(line_text.rstrip("\r"))
        ):
            out.warning(
                "markdown_table",
                "a markdown table would be read aloud cell by cell; write it as sentences",
                line - 1,
                1,
            )
    length = len(text) - start
    if length > PROMPT_LONG_CHARS:
        out.warning(
            "prompt_too_long",
            f"the prompt is {length} characters (over {PROMPT_LONG_CHARS}): it is re-sent on "
            "every stream rotation and slows the first answer",
            first_line,
            1,
        )


def _lint_settings(settings: Mapping[str, Any], out: IssueCollector) -> None:
    voice, language = settings.get("voice"), settings.get("language")
    marks: Mapping[str, tuple[int, int]] = settings.get("_marks", {})
    if voice is not None and language is not None and language not in _VOICE_LOCALES[voice]:
        line, column = marks.get("voice", (1, 1))
        out.warning(
            "voice_language_mismatch",
            f"voice {voice!r} does not speak {language}; choose one that does or a polyglot "
            "voice (matthew, tiffany)",
            line,
            column,
        )
