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
``greeting``    what the assistant says first (used by a later feature), at most
                :data:`GREETING_MAX_CHARS` characters
``tools``       a list of tools (:mod:`actors.assistant_tools`), reserved for a later feature
============== ==================================================================

Lint **warnings** (publishing is still allowed) flag what hurts a *voice* model: markdown
tables and fenced code blocks (read aloud symbol by symbol), a prompt longer than
:data:`PROMPT_LONG_CHARS` characters (sent again on every stream rotation, and slows the
first answer), and a voice that does not speak the chosen ``language``.

This module is sans-IO (no trio, no boto3): the CLI, the admin API, the web page and, as a
guard, the daemon's prompt path all call :func:`validate_definition`.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from typing import Any, Final, Literal

import attrs
import yaml

from actors.assistant_tools import TOOL_KINDS, ToolKind, ToolSpec, check_tools
from actors.definition_issues import (
    DefinitionIssue,
    IssueCollector,
    TextPositions,
    ValidationReport,
    shorten,
    type_name,
    yaml_position,
)
from actors.sonic.events import ENDPOINTING_SENSITIVITIES, VOICES

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

Endpointing = Literal["HIGH", "MEDIUM", "LOW"]

FRONT_MATTER_KEYS: Final = (
    "voice",
    "endpointing",
    "temperature",
    "top_p",
    "max_tokens",
    "language",
    "greeting",
    "tools",
)
"""Every key the front matter may hold, in the order :func:`render_definition` writes them."""

MAX_TOKENS_RANGE: Final = (1, 10000)
"""Inclusive bounds of ``max_tokens`` (nova-sonic.md §3.2: LiveKit validates 1..10000)."""

LANGUAGES: Final[Mapping[str, str]] = {
    "en-US": "US English",
    "en-GB": "British English",
    "en-AU": "Australian English",
    "en-IN": "Indian English",
    "fr-FR": "French",
    "it-IT": "Italian",
    "de-DE": "German",
    "es-US": "Spanish",
    "pt-BR": "Brazilian Portuguese",
    "hi-IN": "Hindi",
}
"""Locales Nova Sonic speaks (nova-sonic.md §3.6, §3.7), with the name used to instruct it."""

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

GREETING_MAX_CHARS: Final = 500
"""Longest greeting: a first sentence on the phone, not a speech."""

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

    def front_matter(self) -> dict[str, object]:
        """The settings that are set, as JSON-ready values, in :data:`FRONT_MATTER_KEYS` order."""
        out: dict[str, object] = {}
        for key in FRONT_MATTER_KEYS:
            value = getattr(self, key)
            if key == "tools":
                if value:
                    out[key] = [tool.to_json() for tool in value]
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
        settings = _parse_front_matter(front, out, first_line=2)
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


# --- front matter -------------------------------------------------------------------------


def _parse_front_matter(source: str, out: IssueCollector, *, first_line: int) -> dict[str, Any]:
    """Parse and check the YAML between the ``---`` lines; ``first_line`` is its file line."""
    try:
        # The reader checks the characters as it is built, so construction can fail too.
        loader = yaml.SafeLoader(source)
    except yaml.reader.ReaderError as exc:
        _reader_error(exc, source, out, first_line)
        return {}
    try:
        try:
            root = loader.get_single_node()
        except yaml.reader.ReaderError as exc:
            _reader_error(exc, source, out, first_line)
            return {}
        except yaml.MarkedYAMLError as exc:
            line, column = yaml_position(exc.problem_mark or exc.context_mark, first_line)
            out.error("yaml_syntax", f"front matter is not valid YAML: {exc.problem}", line, column)
            return {}
        if root is None:
            return {}  # "---\n---": front matter present but empty
        if not isinstance(root, yaml.MappingNode):
            line, column = yaml_position(root.start_mark, first_line)
            out.error(
                "front_matter_not_mapping", "front matter must be a mapping of keys", line, column
            )
            return {}
        return _check_keys(loader, root, out, first_line)
    finally:
        loader.dispose()


def _reader_error(
    exc: yaml.reader.ReaderError, source: str, out: IssueCollector, first_line: int
) -> None:
    if unicodedata.category(chr(exc.character)) == "Cc":
        return  # _check_characters reported this control character already
    line, column = TextPositions(source).at(exc.position)
    out.error(
        "yaml_syntax",
        f"front matter holds U+{exc.character:04X}, which YAML does not allow",
        line + first_line - 1,
        column,
    )


def _construct(
    loader: yaml.SafeLoader, node: yaml.Node, out: IssueCollector, first_line: int
) -> tuple[bool, Any]:
    try:
        return True, loader.construct_object(node, deep=True)
    except yaml.MarkedYAMLError as exc:
        line, column = yaml_position(exc.problem_mark or node.start_mark, first_line)
        out.error("yaml_syntax", f"front matter value is not valid: {exc.problem}", line, column)
        return False, None


def _check_keys(
    loader: yaml.SafeLoader, root: yaml.MappingNode, out: IssueCollector, first_line: int
) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    marks: dict[str, tuple[int, int]] = {}
    value_marks: dict[str, tuple[int, int]] = {}
    for key_node, value_node in root.value:
        key_at = yaml_position(key_node.start_mark, first_line)
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
            out.error("invalid_type", "front matter keys must be plain names", *key_at)
            continue
        key = key_node.value
        if key in marks:
            out.error(
                "duplicate_key",
                f"key {key!r} appears twice (first on line {marks[key][0]})",
                *key_at,
            )
            continue
        marks[key] = key_at
        if key not in FRONT_MATTER_KEYS:
            out.error(
                "unknown_key",
                f"unknown key {shorten(key)!r}; known keys: {', '.join(FRONT_MATTER_KEYS)}",
                *key_at,
            )
            continue
        built, value = _construct(loader, value_node, out, first_line)
        if not built:
            continue
        at = yaml_position(value_node.start_mark, first_line)
        value_marks[key] = at
        if value is None:
            continue  # "voice:" with nothing after it: same as leaving the key out
        if key == "tools":
            tools = check_tools(value, value_node, out, first_line)
            if tools is not None:
                settings[key] = tools
            continue
        checked = _check_setting(key, value, at, out)
        if checked is not None:
            settings[key] = checked
    # Where each value starts, for warnings about combinations (popped before use).
    settings["_marks"] = value_marks
    return settings


def _check_setting(key: str, value: Any, at: tuple[int, int], out: IssueCollector) -> Any:
    """Check one scalar setting; return its value, or ``None`` after reporting the error."""
    if key == "voice":
        if not isinstance(value, str):
            out.error("invalid_type", f"voice must be a string, not {type_name(value)}", *at)
        elif value not in VOICES:
            out.error(
                "invalid_value",
                f"voice {shorten(value)!r} is not a Nova Sonic voice ({', '.join(sorted(VOICES))})",
                *at,
            )
        else:
            return value
    elif key == "endpointing":
        if not isinstance(value, str):
            out.error("invalid_type", f"endpointing must be a string, not {type_name(value)}", *at)
        elif value not in ENDPOINTING_SENSITIVITIES:
            out.error(
                "invalid_value",
                f"endpointing {shorten(value)!r} must be HIGH, MEDIUM or LOW",
                *at,
            )
        else:
            return value
    elif key in ("temperature", "top_p"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            out.error("invalid_type", f"{key} must be a number, not {type_name(value)}", *at)
        elif not (math.isfinite(value) and 0.0 <= value <= 1.0):
            out.error("out_of_range", f"{key} {value} is outside 0.0 to 1.0", *at)
        else:
            return float(value)
    elif key == "max_tokens":
        low, high = MAX_TOKENS_RANGE
        if isinstance(value, bool) or not isinstance(value, int):
            out.error("invalid_type", f"max_tokens must be an integer, not {type_name(value)}", *at)
        elif not low <= value <= high:
            out.error("out_of_range", f"max_tokens {value} is outside {low} to {high}", *at)
        else:
            return value
    elif key == "language":
        if not isinstance(value, str):
            out.error("invalid_type", f"language must be a string, not {type_name(value)}", *at)
        elif value not in LANGUAGES:
            out.error(
                "invalid_value",
                f"language {shorten(value)!r} is not one Nova Sonic speaks "
                f"({', '.join(LANGUAGES)})",
                *at,
            )
        else:
            return value
    elif key == "greeting":
        if not isinstance(value, str):
            out.error("invalid_type", f"greeting must be a string, not {type_name(value)}", *at)
        elif not value.strip():
            out.error("invalid_value", "greeting must not be blank (leave the key out)", *at)
        elif len(value) > GREETING_MAX_CHARS:
            out.error(
                "out_of_range",
                f"greeting is {len(value)} characters, more than {GREETING_MAX_CHARS}",
                *at,
            )
        else:
            return value
    return None
