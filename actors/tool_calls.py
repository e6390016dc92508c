"""Tool calls between the Sonic session and the executors: the messages and the runner's shape."""

from __future__ import annotations

from typing import Protocol

import attrs


@attrs.frozen
class ToolUse:
    """One ``toolUse`` the model asked for: its id, the tool's name and its JSON input text."""

    tool_use_id: str
    name: str
    content: str


@attrs.frozen
class ToolResult:
    """The one result for a ``toolUse``: JSON text for the model, and whether it is an error."""

    tool_use_id: str
    content: str
    is_error: bool = False


class ToolRunnerLike(Protocol):
    """Runs tool uses without blocking the caller: ``submit`` returns at once; the runner
    later delivers exactly one :class:`ToolResult` per use to the result sink it was given."""

    async def submit(self, use: ToolUse) -> None:
        """Accept one tool use (bounded inbox; never waits for the tool to finish)."""
        ...
