"""Where a definition goes wrong: the issue records, and the helpers that place them.

:class:`DefinitionIssue` and :class:`ValidationReport` are what
:func:`actors.assistant_definition.validate_definition` returns (and what the CLI and the
admin API show). :class:`IssueCollector` gathers issues while validating, with at most
:data:`MAX_ISSUES_PER_CODE` of one kind, so a pasted binary cannot produce a megabyte report.
Sans-IO.
"""

from __future__ import annotations

import re
from typing import Final, Literal

import attrs
import yaml

Severity = Literal["error", "warning"]

MAX_ISSUES_PER_CODE: Final = 20
"""Issues of one code kept in a report; further ones are counted, not listed."""


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


class TextPositions:
    """Maps a character offset of the text to its 1-based (line, column)."""

    def __init__(self, text: str) -> None:
        self._starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def at(self, offset: int) -> tuple[int, int]:
        """The 1-based (line, column) of character ``offset`` (binary search of line starts)."""
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


class IssueCollector:
    """Gathers the issues of one validation run (bounded per code) into a report."""

    def __init__(self) -> None:
        self.issues: list[DefinitionIssue] = []
        self.error_count = 0
        self._per_code: dict[str, int] = {}

    def add(self, severity: Severity, code: str, message: str, line: int, column: int) -> None:
        """Record one issue (every error is counted, even beyond the listing bound)."""
        if severity == "error":
            self.error_count += 1
        count = self._per_code.get(code, 0)
        self._per_code[code] = count + 1
        if count < MAX_ISSUES_PER_CODE:  # a pasted binary must not yield a megabyte report
            self.issues.append(DefinitionIssue(severity, code, message, line, column))

    def error(self, code: str, message: str, line: int, column: int) -> None:
        """Record an error: the definition cannot be used."""
        self.add("error", code, message, line, column)

    def warning(self, code: str, message: str, line: int, column: int) -> None:
        """Record a lint warning: allowed, but worth fixing."""
        self.add("warning", code, message, line, column)

    def report(self) -> ValidationReport:
        """The issues so far, in file order (errors before warnings at one position)."""
        ordered = sorted(self.issues, key=lambda i: (i.line, i.column, i.severity != "error"))
        return ValidationReport(tuple(ordered))

    @property
    def has_errors(self) -> bool:
        """Whether any error was recorded."""
        return self.error_count > 0


def yaml_position(mark: yaml.Mark | None, first_line: int) -> tuple[int, int]:
    """A PyYAML mark (0-based, within the front matter) as a 1-based file (line, column);
    ``first_line`` is the file line the YAML starts on."""
    if mark is None:
        return first_line, 1
    return mark.line + first_line, mark.column + 1


def shorten(value: object) -> str:
    """``value`` as text, cut to 40 characters: messages never echo much of a file."""
    text = str(value)
    return text if len(text) <= 40 else text[:40] + "..."


def type_name(value: object) -> str:
    """How a message names the YAML type of ``value`` ("a string", "a list", ...)."""
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    names.update({list: "a list", dict: "a mapping"})
    return names.get(type(value), type(value).__name__)
