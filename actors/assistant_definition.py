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
``tools``       a list of tools (:class:`ToolSpec`), reserved for a later feature
============== ==================================================================

Lint **warnings** (publishing is still allowed) flag what hurts a *voice* model: markdown
tables and fenced code blocks (read aloud symbol by symbol), a prompt longer than
:data:`PROMPT_LONG_CHARS` characters (sent again on every stream rotation, and slows the
first answer), and a voice that does not speak the chosen ``language``.

This module is sans-IO (no trio, no boto3): the CLI, the admin API, the web page and, as a
guard, the daemon's prompt path all call :func:`validate_definition`.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Mapping
from typing import Any, Final, Literal

import attrs
import yaml

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
    "ToolSpec",
    "ValidationReport",
    "language_instruction",
    "render_definition",
    "validate_definition",
]

Severity = Literal["error", "warning"]
Endpointing = Literal["HIGH", "MEDIUM", "LOW"]
ToolKind = Literal["hang_up", "transfer", "webhook"]

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

TOOL_KINDS: Final = ("hang_up", "transfer", "webhook")
"""``hang_up`` and ``transfer`` are built into the daemon; ``webhook`` calls a URL."""

_TOOL_KIND_OF: Final[Mapping[object, ToolKind]] = {k: k for k in ("hang_up", "transfer", "webhook")}
_TOOL_KEYS: Final = ("name", "description", "kind", "input_schema", "url", "timeout", "target")
_TOOL_NAME_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_TOOL_TIMEOUT_RANGE: Final = (0.1, 30.0)
_TRANSFER_TARGET_RE: Final = re.compile(r"\+[1-9][0-9]{6,14}|sips?:[^\s@]+@[^\s]+")
_URL_RE: Final = re.compile(r"https?://[^\s/?#]+[^\s]*")
_DEFAULT_SCHEMA: Final = '{"properties":{},"type":"object"}'

_PLACEHOLDER_RE: Final = re.compile(r"\{\{[^\n]*?\}\}|\{%[^\n]*?%\}")
_FENCE_RE: Final = re.compile(r"[ ]{0,3}(```|~~~)")
_TABLE_SEPARATOR_RE: Final = re.compile(r"\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)+\|?\s*")
_MAX_ISSUES_PER_CODE: Final = 20


# --- the records ------------------------------------------------------------------------


@attrs.frozen
class DefinitionIssue:
    """One problem found in a definition, at a 1-based ``line`` and ``column`` of the file."""

    severity: Severity
    code: str
    """Machine-readable name of the rule (see the module docstring)."""
    message: str
    """One sentence for a person; never quotes more than a few characters of the file."""
    line: int
    column: int

    def to_json(self) -> dict[str, object]:
        """The issue as a JSON object (the API's and the CLI's ``--json`` shape)."""
        return {
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "line": self.line,
            "column": self.column,
        }

    def __str__(self) -> str:
        return f"{self.line}:{self.column}: {self.severity}: {self.message} [{self.code}]"


@attrs.frozen
class ValidationReport:
    """Everything :func:`validate_definition` found, sorted by position."""

    issues: tuple[DefinitionIssue, ...] = ()

    @property
    def errors(self) -> tuple[DefinitionIssue, ...]:
        """The issues that make the definition unusable."""
        return tuple(i for i in self.issues if i.severity == "error")

    @property
    def warnings(self) -> tuple[DefinitionIssue, ...]:
        """The lint findings: allowed, but worth fixing."""
        return tuple(i for i in self.issues if i.severity == "warning")

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return not self.errors

    def to_json(self) -> dict[str, object]:
        """``{"ok", "errors", "warnings", "issues": [...]}`` for the API and the CLI."""
        return {
            "ok": self.ok,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "issues": [i.to_json() for i in self.issues],
        }


@attrs.frozen(kw_only=True)
class ToolSpec:
    """One entry of the reserved ``tools:`` list.

    ``input_schema`` is the tool's JSON Schema as canonical JSON text (sorted keys, no
    spaces), so the definition stays hashable. ``url`` and ``timeout`` belong to webhooks,
    ``target`` (E.164 number or SIP URI) to transfers.
    """

    name: str
    description: str
    kind: ToolKind
    input_schema: str = _DEFAULT_SCHEMA
    url: str | None = None
    timeout: float | None = None
    target: str | None = None

    def to_json(self) -> dict[str, object]:
        """The tool as it is written in front matter (absent fields left out)."""
        out: dict[str, object] = {
            "name": self.name,
            "description": self.description,
            "kind": self.kind,
            "input_schema": json.loads(self.input_schema),
        }
        for key in ("url", "timeout", "target"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


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

    Without settings the file is just the prompt (the pre-definition format).
    """
    settings = definition.front_matter()
    if not settings:
        return definition.prompt
    dumped = yaml.safe_dump(
        settings, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1000
    )
    return f"---\n{dumped}---\n{definition.prompt}"


# --- validation ---------------------------------------------------------------------------


class _Positions:
    """Maps a character offset of the text to its 1-based (line, column)."""

    def __init__(self, text: str) -> None:
        self._starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def at(self, offset: int) -> tuple[int, int]:
        # Binary search over line starts.
        lo, hi = 0, len(self._starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._starts[mid] <= offset:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1, offset - self._starts[lo] + 1

    def line_start(self, line: int) -> int:
        """Offset of 1-based ``line``'s first character."""
        return self._starts[line - 1]


class _Collector:
    def __init__(self) -> None:
        self.issues: list[DefinitionIssue] = []
        self.error_count = 0
        self._per_code: dict[str, int] = {}

    def add(self, severity: Severity, code: str, message: str, line: int, column: int) -> None:
        if severity == "error":
            self.error_count += 1
        count = self._per_code.get(code, 0)
        self._per_code[code] = count + 1
        if count < _MAX_ISSUES_PER_CODE:  # a pasted binary must not yield a megabyte report
            self.issues.append(DefinitionIssue(severity, code, message, line, column))

    def error(self, code: str, message: str, line: int, column: int) -> None:
        self.add("error", code, message, line, column)

    def warning(self, code: str, message: str, line: int, column: int) -> None:
        self.add("warning", code, message, line, column)

    def report(self) -> ValidationReport:
        ordered = sorted(self.issues, key=lambda i: (i.line, i.column, i.severity != "error"))
        return ValidationReport(tuple(ordered))

    @property
    def has_errors(self) -> bool:
        return self.error_count > 0


def validate_definition(
    raw: bytes, *, max_bytes: int
) -> tuple[AssistantDefinition | None, ValidationReport]:
    """Check ``raw`` against the content rules; return the definition (``None`` if any error)
    and the report of every error and warning, each with line and column.

    This is the only validator: the daemon, the CLI, the admin API and the web page call it.
    """
    out = _Collector()
    if len(raw) > max_bytes:
        out.error("too_large", f"the file is {len(raw)} bytes, more than {max_bytes}", 1, 1)
        return None, out.report()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        good = raw[: exc.start].decode("utf-8")
        line, column = _Positions(good).at(len(good))
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
    pos = _Positions(text)
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


def _check_characters(text: str, pos: _Positions, out: _Collector) -> None:
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


def _lint_prompt(text: str, start: int, pos: _Positions, out: _Collector) -> None:
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


def _lint_settings(settings: Mapping[str, Any], out: _Collector) -> None:
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


def _where(mark: yaml.Mark | None, first_line: int) -> tuple[int, int]:
    if mark is None:
        return first_line, 1
    return mark.line + first_line, mark.column + 1


def _parse_front_matter(source: str, out: _Collector, *, first_line: int) -> dict[str, Any]:
    """Parse and check the YAML between the ``---`` lines; ``first_line`` is its file line."""
    loader = yaml.SafeLoader(source)
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            line, column = _where(exc.problem_mark or exc.context_mark, first_line)
            out.error("yaml_syntax", f"front matter is not valid YAML: {exc.problem}", line, column)
            return {}
        except yaml.YAMLError as exc:
            # ReaderError: a character YAML refuses; _check_characters reported it already.
            if not out.has_errors:
                out.error("yaml_syntax", f"front matter is not valid YAML: {exc}", first_line, 1)
            return {}
        if root is None:
            return {}  # "---\n---": front matter present but empty
        if not isinstance(root, yaml.MappingNode):
            line, column = _where(root.start_mark, first_line)
            out.error(
                "front_matter_not_mapping", "front matter must be a mapping of keys", line, column
            )
            return {}
        return _check_keys(loader, root, out, first_line)
    finally:
        loader.dispose()


def _construct(
    loader: yaml.SafeLoader, node: yaml.Node, out: _Collector, first_line: int
) -> tuple[bool, Any]:
    try:
        return True, loader.construct_object(node, deep=True)
    except yaml.MarkedYAMLError as exc:
        line, column = _where(exc.problem_mark or node.start_mark, first_line)
        out.error("yaml_syntax", f"front matter value is not valid: {exc.problem}", line, column)
        return False, None


def _check_keys(
    loader: yaml.SafeLoader, root: yaml.MappingNode, out: _Collector, first_line: int
) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    marks: dict[str, tuple[int, int]] = {}
    value_marks: dict[str, tuple[int, int]] = {}
    for key_node, value_node in root.value:
        key_at = _where(key_node.start_mark, first_line)
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
                f"unknown key {_short(key)!r}; known keys: {', '.join(FRONT_MATTER_KEYS)}",
                *key_at,
            )
            continue
        built, value = _construct(loader, value_node, out, first_line)
        if not built:
            continue
        at = _where(value_node.start_mark, first_line)
        value_marks[key] = at
        if value is None:
            continue  # "voice:" with nothing after it: same as leaving the key out
        if key == "tools":
            tools = _check_tools(value, value_node, out, first_line)
            if tools is not None:
                settings[key] = tools
            continue
        checked = _check_setting(key, value, at, out)
        if checked is not None:
            settings[key] = checked
    # Where each value starts, for warnings about combinations (popped before use).
    settings["_marks"] = value_marks
    return settings


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:40] + "..."


def _check_setting(key: str, value: Any, at: tuple[int, int], out: _Collector) -> Any:
    """Check one scalar setting; return its value, or ``None`` after reporting the error."""
    if key == "voice":
        if not isinstance(value, str):
            out.error("invalid_type", f"voice must be a string, not {_type_name(value)}", *at)
        elif value not in VOICES:
            out.error(
                "invalid_value",
                f"voice {_short(value)!r} is not a Nova Sonic voice ({', '.join(sorted(VOICES))})",
                *at,
            )
        else:
            return value
    elif key == "endpointing":
        if not isinstance(value, str):
            out.error("invalid_type", f"endpointing must be a string, not {_type_name(value)}", *at)
        elif value not in ENDPOINTING_SENSITIVITIES:
            out.error(
                "invalid_value",
                f"endpointing {_short(value)!r} must be HIGH, MEDIUM or LOW",
                *at,
            )
        else:
            return value
    elif key in ("temperature", "top_p"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            out.error("invalid_type", f"{key} must be a number, not {_type_name(value)}", *at)
        elif not (math.isfinite(value) and 0.0 <= value <= 1.0):
            out.error("out_of_range", f"{key} {value} is outside 0.0 to 1.0", *at)
        else:
            return float(value)
    elif key == "max_tokens":
        low, high = MAX_TOKENS_RANGE
        if isinstance(value, bool) or not isinstance(value, int):
            out.error(
                "invalid_type", f"max_tokens must be an integer, not {_type_name(value)}", *at
            )
        elif not low <= value <= high:
            out.error("out_of_range", f"max_tokens {value} is outside {low} to {high}", *at)
        else:
            return value
    elif key == "language":
        if not isinstance(value, str):
            out.error("invalid_type", f"language must be a string, not {_type_name(value)}", *at)
        elif value not in LANGUAGES:
            out.error(
                "invalid_value",
                f"language {_short(value)!r} is not one Nova Sonic speaks ({', '.join(LANGUAGES)})",
                *at,
            )
        else:
            return value
    elif key == "greeting":
        if not isinstance(value, str):
            out.error("invalid_type", f"greeting must be a string, not {_type_name(value)}", *at)
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


def _type_name(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    names.update({list: "a list", dict: "a mapping"})
    return names.get(type(value), type(value).__name__)


def _check_tools(
    value: Any, node: yaml.Node, out: _Collector, first_line: int
) -> list[ToolSpec] | None:
    at = _where(node.start_mark, first_line)
    if not isinstance(value, list) or not isinstance(node, yaml.SequenceNode):
        out.error("invalid_type", f"tools must be a list, not {_type_name(value)}", *at)
        return None
    tools: list[ToolSpec] = []
    names: set[str] = set()
    ok = True
    for item, item_node in zip(value, node.value, strict=True):
        tool = _check_tool(item, item_node, out, first_line)
        if tool is None:
            ok = False
            continue
        if tool.name in names:
            out.error(
                "duplicate_key",
                f"tool name {tool.name!r} is used twice",
                *_where(item_node.start_mark, first_line),
            )
            ok = False
            continue
        names.add(tool.name)
        tools.append(tool)
    return tools if ok else None


def _check_tool(item: Any, node: yaml.Node, out: _Collector, first_line: int) -> ToolSpec | None:
    at = _where(node.start_mark, first_line)
    if not isinstance(item, dict) or not isinstance(node, yaml.MappingNode):
        out.error("invalid_type", f"each tool must be a mapping, not {_type_name(item)}", *at)
        return None
    errors_before = out.error_count
    positions: dict[str, tuple[int, int]] = {}
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        key_at = _where(key_node.start_mark, first_line)
        if not isinstance(key, str) or key not in _TOOL_KEYS:
            out.error(
                "unknown_key",
                f"unknown tool key {_short(key)!r}; known keys: {', '.join(_TOOL_KEYS)}",
                *key_at,
            )
            continue
        positions[key] = _where(value_node.start_mark, first_line)

    def need(key: str, kind_name: str) -> None:
        if key not in item:
            out.error("missing_key", f"tool needs {key!r} ({kind_name})", *at)

    for key in ("name", "description", "kind"):
        need(key, "required")
    name, description, kind = item.get("name"), item.get("description"), item.get("kind")
    if "name" in item and (not isinstance(name, str) or not _TOOL_NAME_RE.fullmatch(name)):
        out.error(
            "invalid_value",
            "tool name must be a letter then up to 63 letters, digits, '_' or '-'",
            *positions["name"],
        )
    if "description" in item and (not isinstance(description, str) or not description.strip()):
        out.error(
            "invalid_value",
            "tool description must be a non-empty string",
            *positions["description"],
        )
    if "kind" in item and kind not in TOOL_KINDS:
        out.error(
            "invalid_value",
            f"tool kind {_short(kind)!r} must be one of {', '.join(TOOL_KINDS)}",
            *positions["kind"],
        )
    schema_text = _DEFAULT_SCHEMA
    if "input_schema" in item:
        schema = item["input_schema"]
        where = positions["input_schema"]
        if not isinstance(schema, dict) or schema.get("type") != "object":
            out.error(
                "invalid_value",
                "tool input_schema must be a JSON Schema mapping with type: object",
                *where,
            )
        else:
            try:
                schema_text = json.dumps(
                    schema, sort_keys=True, separators=(",", ":"), allow_nan=False
                )
            except (TypeError, ValueError):
                out.error(
                    "invalid_value", "tool input_schema must contain only JSON values", *where
                )
    url, timeout, target = item.get("url"), item.get("timeout"), item.get("target")
    if kind == "webhook":
        need("url", "a webhook needs a URL")
        if "url" in item and (not isinstance(url, str) or not _URL_RE.fullmatch(url)):
            out.error("invalid_value", "webhook url must be an http(s):// URL", *positions["url"])
        if "timeout" in item:
            low, high = _TOOL_TIMEOUT_RANGE
            if isinstance(timeout, bool) or not isinstance(timeout, int | float):
                out.error(
                    "invalid_type",
                    "webhook timeout must be a number of seconds",
                    *positions["timeout"],
                )
            elif not low <= timeout <= high:
                out.error(
                    "out_of_range",
                    f"webhook timeout {timeout} is outside {low} to {high} seconds",
                    *positions["timeout"],
                )
    if kind == "transfer":
        need("target", "a transfer needs a target")
        if "target" in item and (
            not isinstance(target, str) or not _TRANSFER_TARGET_RE.fullmatch(target)
        ):
            out.error(
                "invalid_value",
                "transfer target must be an E.164 number (+15551234567) or a sip: URI",
                *positions["target"],
            )
    if kind in TOOL_KINDS:
        for key in ("url", "timeout", "target"):
            allowed = (kind == "webhook" and key in ("url", "timeout")) or (
                kind == "transfer" and key == "target"
            )
            if key in item and not allowed:
                out.error(
                    "invalid_value",
                    f"tool key {key!r} does not apply to kind {kind}",
                    *positions[key],
                )
    if out.error_count > errors_before:
        return None
    return ToolSpec(
        name=str(name),
        description=str(description),
        kind=_TOOL_KIND_OF[kind],  # kind is one of TOOL_KINDS (checked above)
        input_schema=schema_text,
        url=url,
        timeout=None if timeout is None else float(timeout),
        target=target,
    )
