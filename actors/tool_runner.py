"""The tool runner: one actor per call that runs the model's tool uses beside the audio.

::

    open_tool_runner ── nursery (owned by the context manager)
      ├── dispatcher: inbox (bounded) → one task per tool use (at most ``max_running``)
      └── tool use tasks: parse the input → the executor under its timeout → one result
            to the sink → the executor's follow-up (``ToolOutcome.then``), if any

:meth:`ToolRunner.submit` never waits for a tool: it puts the use in the inbox and returns,
so the conversation's output relay (and the caller's audio) never stall behind a webhook.

Every use gets exactly one :class:`~actors.tool_calls.ToolResult`, delivered to the sink:

- an unknown tool name, an input that is not a JSON object, a full inbox or too many tools
  running → an error result at once;
- the executor's own failure (:class:`ToolFailed`) → an error result with its message;
- the tool's timeout (per tool from the definition, else the runner's default) → an error
  result naming the timeout;
- any other exception (a bug in an executor) → a generic error result, logged;
- a result above ``max_result_bytes`` (default :data:`DEFAULT_MAX_RESULT_BYTES`, 16 KiB) →
  an error result, never a truncated (invalid) JSON text.

A failing tool never ends the call. Result contents are JSON text: ``{"error": "..."}`` for
errors. A sink failure (the Sonic session closed meanwhile) is logged and dropped: there is
nobody left to tell.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Final, Protocol

import attrs
import trio

from actors.tool_calls import ToolResult, ToolUse

logger = logging.getLogger("novavoice.tools")

DEFAULT_TIMEOUT: Final = 10.0
"""Seconds a tool may run when its definition sets no ``timeout``."""
DEFAULT_MAX_RESULT_BYTES: Final = 16 * 1024
"""The largest result content (UTF-8 bytes) handed to the model."""
DEFAULT_INBOX: Final = 8
DEFAULT_MAX_RUNNING: Final = 4

ToolSink = Callable[[ToolResult], Awaitable[None]]
"""Where results go: the Sonic session's ``send_tool_result``."""


class ToolFailed(Exception):
    """An executor could not do its job. ``str(exc)`` goes to the model; ``log_detail``
    (default: the same text) to the service log, so text that may hold caller data (a
    webhook's own error message) can reach the model without reaching the log."""

    def __init__(self, message: str, *, log_detail: str | None = None) -> None:
        super().__init__(message)
        self.log_detail = message if log_detail is None else log_detail


@attrs.frozen
class ToolOutcome:
    """What an executor produced: the JSON text for the model, and an optional follow-up
    the runner awaits once the result is delivered (ending the call, for ``hang_up``)."""

    content: str
    then: Callable[[], Awaitable[None]] | None = None


class ToolExecutor(Protocol):
    """Runs one kind of tool for one call."""

    async def run(self, arguments: Mapping[str, object]) -> ToolOutcome:
        """Do the tool's work for ``arguments`` (the model's input, a JSON object)."""
        ...


@attrs.frozen
class RegisteredTool:
    """A tool the runner knows: its executor and its timeout (``None``: the default)."""

    executor: ToolExecutor
    timeout: float | None = None


@attrs.define(eq=False, kw_only=True)
class ToolRunnerStatistics:
    """What the runner did (for the call-end log line and metrics)."""

    submitted: int = 0
    succeeded: int = 0
    failed: int = 0
    timed_out: int = 0
    refused: int = 0
    """Unknown tool, bad input, or no room (inbox full / too many running)."""
    undelivered: int = 0
    """Results the sink could not take (the session had closed)."""


def error_content(message: str) -> str:
    """The JSON text of an error result."""
    return json.dumps({"error": message}, separators=(",", ":"))


class ToolRunner:
    """The handle of a running tool runner (see :func:`open_tool_runner`)."""

    def __init__(
        self,
        inbox: trio.MemorySendChannel[ToolUse],
        sink: ToolSink,
        statistics: ToolRunnerStatistics,
    ) -> None:
        self._inbox = inbox
        self._sink = sink
        self.statistics = statistics

    async def submit(self, use: ToolUse) -> None:
        """Accept one tool use; returns at once (a full inbox answers with an error)."""
        self.statistics.submitted += 1
        try:
            self._inbox.send_nowait(use)
        except trio.WouldBlock:
            self.statistics.refused += 1
            await _deliver(self._sink, _error(use, "too many tool calls at once"), self.statistics)
        else:
            await trio.lowlevel.checkpoint()


@asynccontextmanager
async def open_tool_runner(
    tools: Mapping[str, RegisteredTool],
    sink: ToolSink,
    *,
    default_timeout: float = DEFAULT_TIMEOUT,
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
    inbox: int = DEFAULT_INBOX,
    max_running: int = DEFAULT_MAX_RUNNING,
) -> AsyncIterator[ToolRunner]:
    """Run ``tools`` for one call until the block exits (running tools are then cancelled)."""
    send, receive = trio.open_memory_channel[ToolUse](inbox)
    statistics = ToolRunnerStatistics()
    policy = _Policy(tools, sink, default_timeout, max_result_bytes, max_running, statistics)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(policy.dispatch, receive, nursery, name="tool_dispatcher")
        try:
            yield ToolRunner(send, sink, statistics)
        finally:
            nursery.cancel_scope.cancel()


@attrs.define(eq=False)
class _Policy:
    tools: Mapping[str, RegisteredTool]
    sink: ToolSink
    default_timeout: float
    max_result_bytes: int
    max_running: int
    statistics: ToolRunnerStatistics
    running: int = 0

    async def dispatch(
        self, uses: trio.MemoryReceiveChannel[ToolUse], nursery: trio.Nursery
    ) -> None:
        async for use in uses:
            if self.running >= self.max_running:
                self.statistics.refused += 1
                await _deliver(self.sink, _error(use, "too many tools running"), self.statistics)
                continue
            self.running += 1
            nursery.start_soon(self._run_one, use, name=f"tool:{use.name[:32]}")

    async def _run_one(self, use: ToolUse) -> None:
        try:
            result, then = await self._result_for(use)
            await _deliver(self.sink, result, self.statistics)
        finally:
            self.running -= 1
        if then is not None:
            try:
                await then()
            except Exception:
                # The result was delivered; a failing follow-up must not end the call.
                logger.exception("tool follow-up failed", extra={"event": "tool_follow_up_failed"})

    async def _result_for(
        self, use: ToolUse
    ) -> tuple[ToolResult, Callable[[], Awaitable[None]] | None]:
        st = self.statistics
        tool = self.tools.get(use.name)
        if tool is None:
            st.refused += 1
            return _error(use, f"unknown tool {use.name[:64]!r}"), None
        arguments = _arguments(use.content)
        if arguments is None:
            st.refused += 1
            return _error(use, "tool input is not a JSON object"), None
        timeout = self.default_timeout if tool.timeout is None else tool.timeout
        outcome: ToolOutcome | None = None
        try:
            with trio.move_on_after(timeout):
                outcome = await tool.executor.run(arguments)
        except ToolFailed as exc:
            st.failed += 1
            logger.info(
                "tool failed",
                extra={"event": "tool_failed", "tool": use.name, "error": exc.log_detail[:200]},
            )
            return _error(use, str(exc)[:500]), None
        except Exception:
            st.failed += 1
            logger.exception("tool crashed", extra={"event": "tool_crashed", "tool": use.name})
            return _error(use, "the tool failed"), None
        if outcome is None:
            st.timed_out += 1
            logger.info("tool timed out", extra={"event": "tool_timeout", "tool": use.name})
            return _error(use, f"the tool did not answer within {timeout:g} s"), None
        size = len(outcome.content.encode())
        if size > self.max_result_bytes:
            st.failed += 1
            message = f"the tool's result is over {self.max_result_bytes} bytes"
            return _error(use, message), None
        st.succeeded += 1
        return ToolResult(use.tool_use_id, outcome.content), outcome.then


def _arguments(content: str) -> dict[str, object] | None:
    text = content.strip() or "{}"  # a tool without parameters may get an empty input
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _error(use: ToolUse, message: str) -> ToolResult:
    return ToolResult(use.tool_use_id, error_content(message), is_error=True)


async def _deliver(sink: ToolSink, result: ToolResult, statistics: ToolRunnerStatistics) -> None:
    try:
        await sink(result)
    except Exception as exc:
        statistics.undelivered += 1
        logger.warning(
            "tool result not delivered",
            extra={"event": "tool_result_undelivered", "error": type(exc).__name__},
        )
