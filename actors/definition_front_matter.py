"""The front matter of an assistant definition: its keys, their allowed values, and the parser.

:func:`parse_front_matter` reads the YAML between the ``---`` lines into checked settings,
reporting every ``front_matter_*``, ``yaml_syntax``, ``duplicate_key``, ``unknown_key``,
``invalid_type``, ``out_of_range`` and ``invalid_value`` error with its line and column in
the whole file. The file format, the rules for the prompt and the lint warnings live in
:mod:`actors.assistant_definition`, which calls this module and re-exports its tables.

Sans-IO (no trio, no boto3), like the rest of the definition code.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping
from typing import Any, Final, Literal

import yaml

from actors.assistant_tools import check_tools
from actors.definition_issues import (
    IssueCollector,
    TextPositions,
    shorten,
    type_name,
    yaml_position,
)
from actors.keypad import check_dtmf
from actors.sonic.events import ENDPOINTING_SENSITIVITIES, VOICES

__all__ = [
    "FRONT_MATTER_KEYS",
    "GREETING_MAX_CHARS",
    "LANGUAGES",
    "MAX_TOKENS_RANGE",
    "Endpointing",
    "parse_front_matter",
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
    "dtmf",
)
"""Every key the front matter may hold, in the order
:func:`~actors.assistant_definition.render_definition` writes them."""

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

GREETING_MAX_CHARS: Final = 500
"""Longest greeting: a first sentence on the phone, not a speech."""


def parse_front_matter(source: str, out: IssueCollector, *, first_line: int) -> dict[str, Any]:
    """Parse and check the YAML between the ``---`` lines; ``first_line`` is its file line.

    Returns the valid settings by key (a bad value is reported to ``out`` and left out),
    plus ``"_marks"``: where each value starts, for warnings about combinations.
    """
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
        return  # the whole-file character check reported this control character already
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
        if key == "dtmf":
            policy = check_dtmf(value, value_node, out, first_line)
            if policy is not None:
                settings[key] = policy
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
