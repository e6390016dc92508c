"""Tool use in the emulator (sans-IO): the ``toolConfiguration`` rules, the ``toolUse`` output
events, and the ledger that checks each ``toolUse`` gets exactly one ``toolResult``.

Rules (reference nova-sonic.md §3.2, the Nova 2 tool-configuration page and the v1
"speech-tools-use" / "speech-tools-choice" pages): ``toolConfiguration.tools`` is a non-empty
list of ``{"toolSpec": {"name", "description", "inputSchema": {"json": "<string>"}}}``; the
schema is JSON *text* that must parse to a JSON object (Bedrock refuses an object there);
names are unique; ``toolUseOutputConfiguration.mediaType`` must be ``application/json`` when
tools are offered; ``toolChoice``, when present, is one of ``{"auto": {}}``, ``{"any": {}}``
or ``{"tool": {"name": <offered tool>}}``.

Results (§10): exactly one ``toolResult`` per ``toolUse`` (an interim result followed by a
final one is refused). A result for an id the model never issued, or a second result for the
same id, is a violation. Results may arrive in any order (tools run asynchronously), but the
ledger counts results that overtake an earlier pending tool use, so a test can require order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["ToolLedger", "check_tool_configuration", "reply_to_text", "tool_use_events"]

TOOL_CHOICES = frozenset({"auto", "any", "tool"})


def check_tool_configuration(body: Mapping[str, Any]) -> tuple[tuple[str, ...], str | None]:
    """The tool names ``promptStart`` offers, and the violation message if it breaks a rule."""
    config = body.get("toolConfiguration")
    if config is None:
        return (), None
    if not isinstance(config, dict):
        return (), "promptStart.toolConfiguration must be an object"
    output = body.get("toolUseOutputConfiguration")
    if not isinstance(output, dict) or output.get("mediaType") != "application/json":
        return (), (
            "promptStart.toolUseOutputConfiguration.mediaType must be application/json "
            "when tools are configured"
        )
    tools = config.get("tools")
    if not isinstance(tools, list) or not tools:
        return (), "promptStart.toolConfiguration.tools must be a non-empty list"
    names: list[str] = []
    for index, tool in enumerate(tools):
        where = f"promptStart.toolConfiguration.tools[{index}]"
        spec = tool.get("toolSpec") if isinstance(tool, dict) else None
        if not isinstance(spec, dict):
            return (), f"{where}.toolSpec must be an object"
        name, description = spec.get("name"), spec.get("description")
        if not isinstance(name, str) or not name:
            return (), f"{where}.toolSpec.name must be a non-empty string"
        if name in names:
            return (), f"{where}.toolSpec.name {name!r} is used twice"
        if not isinstance(description, str) or not description:
            return (), f"{where}.toolSpec.description must be a non-empty string"
        schema = spec.get("inputSchema")
        text = schema.get("json") if isinstance(schema, dict) else None
        if not isinstance(text, str):
            return (), f"{where}.toolSpec.inputSchema.json must be a JSON Schema as a string"
        try:
            parsed = json.loads(text)
        except ValueError:
            return (), f"{where}.toolSpec.inputSchema.json is not valid JSON"
        if not isinstance(parsed, dict):
            return (), f"{where}.toolSpec.inputSchema.json must be a JSON object"
        names.append(name)
    choice = config.get("toolChoice")
    if choice is not None:
        if not isinstance(choice, dict) or len(choice) != 1 or set(choice) - TOOL_CHOICES:
            return (), 'promptStart.toolConfiguration.toolChoice must be {"auto": {}}, ' \
                '{"any": {}} or {"tool": {"name": ...}}'  # fmt: skip
        ((kind, value),) = choice.items()
        if not isinstance(value, dict):
            return (), f"promptStart.toolConfiguration.toolChoice.{kind} must be an object"
        if kind == "tool" and value.get("name") not in names:
            return (), "promptStart.toolConfiguration.toolChoice.tool.name is not an offered tool"
    return tuple(names), None


_QUOTED = re.compile(r'"([^"]{1,500})"')


def reply_to_text(text: str, *, greeting: bool) -> str:
    """What the emulated model says to a cross-modal text.

    A greeting request (text sent before any audio) is answered with the quoted sentence it
    contains, if any, so a test hears the assistant's own greeting; any other text is
    acknowledged by repeating it, so a test can see that keypad digits arrived as text.
    """
    if greeting:
        quoted = _QUOTED.search(text)
        return quoted.group(1) if quoted else "Hello! How can I help you today?"
    return f"You sent me: {text[:200]}"


def _dump(name: str, body: dict[str, Any]) -> bytes:
    return json.dumps({"event": {name: body}}, separators=(",", ":")).encode()


def tool_use_events(
    *, ids: Mapping[str, str], content_id: str, tool_name: str, tool_use_id: str, content: str
) -> list[bytes]:
    """The output events of one tool call: TOOL ``contentStart``, ``toolUse``, TOOL
    ``contentEnd`` with ``stopReason`` ``TOOL_USE`` (the Nova 2 output-events page)."""
    base = {**ids, "contentId": content_id}
    return [
        _dump(
            "contentStart",
            {
                **base,
                "type": "TOOL",
                "role": "TOOL",
                "toolUseOutputConfiguration": {"mediaType": "application/json"},
            },
        ),
        _dump(
            "toolUse",
            {**base, "toolName": tool_name, "toolUseId": tool_use_id, "content": content},
        ),
        _dump("contentEnd", {**base, "type": "TOOL", "stopReason": "TOOL_USE"}),
    ]


@attrs.define
class ToolLedger:
    """The tool uses one stream issued and the results it received."""

    issued: list[str] = attrs.field(factory=list)
    names: dict[str, str] = attrs.field(factory=dict)
    answered: set[str] = attrs.field(factory=set)
    out_of_order: int = 0

    def issue(self, tool_use_id: str, name: str) -> None:
        """Record a ``toolUse`` the emulator sent."""
        self.issued.append(tool_use_id)
        self.names[tool_use_id] = name

    @property
    def pending(self) -> list[str]:
        """Issued ids without their result, oldest first."""
        return [i for i in self.issued if i not in self.answered]

    def answer(self, tool_use_id: str) -> str | None:
        """Record a ``toolResult``; return the violation message if it breaks a rule."""
        if tool_use_id not in self.names:
            return f"toolResult for toolUseId {tool_use_id!r}, which this session never issued"
        if tool_use_id in self.answered:
            return (
                f"toolUseId {tool_use_id!r} already has its toolResult; send exactly one "
                "toolResult per toolUse"
            )
        if self.pending[0] != tool_use_id:
            self.out_of_order += 1
        self.answered.add(tool_use_id)
        return None
