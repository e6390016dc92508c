"""The tool runner: one result per use, timeouts, size caps, never blocking the submitter.

Fakes only, under the autojump clock (virtual time: a 30 s tool finishes instantly).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import attrs
import pytest
import trio
import trio.testing

from actors.tool_calls import ToolResult, ToolUse
from actors.tool_runner import (
    RegisteredTool,
    ToolFailed,
    ToolOutcome,
    open_tool_runner,
)


@attrs.define
class Sink:
    results: list[ToolResult] = attrs.field(factory=list)
    times: list[float] = attrs.field(factory=list)
    fail: bool = False

    async def __call__(self, result: ToolResult) -> None:
        await trio.lowlevel.checkpoint()
        if self.fail:
            raise trio.ClosedResourceError("session closed")
        self.results.append(result)
        self.times.append(trio.current_time())

    def by_id(self) -> dict[str, ToolResult]:
        return {r.tool_use_id: r for r in self.results}


@attrs.define
class Sleeper:
    """Sleeps, then answers with what it was given."""

    seconds: float
    calls: list[Mapping[str, object]] = attrs.field(factory=list)

    async def run(self, arguments: Mapping[str, object]) -> ToolOutcome:
        self.calls.append(arguments)
        await trio.sleep(self.seconds)
        return ToolOutcome(json.dumps({"echo": dict(arguments)}))


@attrs.define
class Raiser:
    exc: Exception

    async def run(self, arguments: Mapping[str, object]) -> ToolOutcome:
        await trio.lowlevel.checkpoint()
        raise self.exc


@attrs.define
class Big:
    size: int

    async def run(self, arguments: Mapping[str, object]) -> ToolOutcome:
        await trio.lowlevel.checkpoint()
        return ToolOutcome(json.dumps({"x": "a" * self.size}))


def error_of(result: ToolResult) -> str:
    assert result.is_error
    message = json.loads(result.content)["error"]
    assert isinstance(message, str)
    return message


async def test_submit_returns_before_the_tool_finishes(autojump_clock: trio.abc.Clock) -> None:
    sink = Sink()
    slow = Sleeper(5.0)
    async with open_tool_runner({"slow": RegisteredTool(slow, 30)}, sink) as runner:
        start = trio.current_time()
        await runner.submit(ToolUse("u1", "slow", '{"day": "monday"}'))
        assert trio.current_time() == start  # no waiting for the tool
        assert sink.results == []
        await trio.sleep(6)
    assert sink.results == [ToolResult("u1", '{"echo": {"day": "monday"}}')]
    assert sink.times[0] - start == pytest.approx(5.0, abs=0.2)
    assert slow.calls == [{"day": "monday"}]


async def test_tools_run_concurrently(autojump_clock: trio.abc.Clock) -> None:
    sink = Sink()
    tools = {"a": RegisteredTool(Sleeper(3.0)), "b": RegisteredTool(Sleeper(1.0))}
    async with open_tool_runner(tools, sink) as runner:
        start = trio.current_time()
        await runner.submit(ToolUse("1", "a", "{}"))
        await runner.submit(ToolUse("2", "b", "{}"))
        await trio.sleep(4)
    # The short one answered first; both within the longer one's time: not serialised.
    assert [r.tool_use_id for r in sink.results] == ["2", "1"]
    assert sink.times[1] - start == pytest.approx(3.0, abs=0.2)


async def test_timeout_gives_an_error_result_and_the_runner_goes_on(
    autojump_clock: trio.abc.Clock,
) -> None:
    sink = Sink()
    tools = {
        "slow": RegisteredTool(Sleeper(60.0), timeout=2.0),
        "quick": RegisteredTool(Sleeper(0)),
    }
    async with open_tool_runner(tools, sink, default_timeout=10) as runner:
        start = trio.current_time()
        await runner.submit(ToolUse("s", "slow", "{}"))
        await trio.sleep(5)
        await runner.submit(ToolUse("q", "quick", "{}"))
        await trio.sleep(1)
        stats = runner.statistics
    results = sink.by_id()
    assert error_of(results["s"]) == "the tool did not answer within 2 s"
    assert sink.times[0] - start == pytest.approx(2.0, abs=0.2)
    assert not results["q"].is_error
    assert (stats.timed_out, stats.succeeded) == (1, 1)


async def test_default_timeout_applies_when_the_tool_sets_none(
    autojump_clock: trio.abc.Clock,
) -> None:
    sink = Sink()
    async with open_tool_runner(
        {"slow": RegisteredTool(Sleeper(60.0))}, sink, default_timeout=7
    ) as r:
        start = trio.current_time()
        await r.submit(ToolUse("s", "slow", "{}"))
        await trio.sleep(10)
    assert error_of(sink.results[0]) == "the tool did not answer within 7 s"
    assert sink.times[0] - start == pytest.approx(7.0, abs=0.2)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("nope", "{}", "unknown tool 'nope'"),
        ("echo", "[1, 2]", "tool input is not a JSON object"),
        ("echo", "{not json", "tool input is not a JSON object"),
    ],
)
async def test_refusals_are_error_results(
    autojump_clock: trio.abc.Clock, name: str, content: str, message: str
) -> None:
    sink = Sink()
    async with open_tool_runner({"echo": RegisteredTool(Sleeper(0))}, sink) as runner:
        await runner.submit(ToolUse("u", name, content))
        await trio.sleep(1)
    assert len(sink.results) == 1
    assert error_of(sink.results[0]) == message


async def test_empty_input_means_no_arguments(autojump_clock: trio.abc.Clock) -> None:
    sink = Sink()
    echo = Sleeper(0)
    async with open_tool_runner({"echo": RegisteredTool(echo)}, sink) as runner:
        await runner.submit(ToolUse("u", "echo", ""))
        await trio.sleep(1)
    assert echo.calls == [{}]
    assert not sink.results[0].is_error


async def test_failures_are_error_results_never_exceptions(
    autojump_clock: trio.abc.Clock,
) -> None:
    sink = Sink()
    tools = {
        "failed": RegisteredTool(Raiser(ToolFailed("the line is busy"))),
        "crashed": RegisteredTool(Raiser(KeyError("secret detail"))),
    }
    async with open_tool_runner(tools, sink) as runner:
        await runner.submit(ToolUse("f", "failed", "{}"))
        await runner.submit(ToolUse("c", "crashed", "{}"))
        await trio.sleep(1)
    results = sink.by_id()
    assert error_of(results["f"]) == "the line is busy"
    # A bug's details stay in the service log; the model hears only that the tool failed.
    assert error_of(results["c"]) == "the tool failed"
    assert "secret" not in results["c"].content


async def test_result_over_the_cap_is_an_error_not_a_truncation(
    autojump_clock: trio.abc.Clock,
) -> None:
    sink = Sink()
    tools = {"big": RegisteredTool(Big(20_000)), "fits": RegisteredTool(Big(16_000))}
    async with open_tool_runner(tools, sink, max_result_bytes=16 * 1024) as runner:
        await runner.submit(ToolUse("b", "big", "{}"))
        await runner.submit(ToolUse("f", "fits", "{}"))
        await trio.sleep(1)
    results = sink.by_id()
    assert error_of(results["b"]) == "the tool's result is over 16384 bytes"
    assert not results["f"].is_error
    assert len(results["f"].content) > 16_000


async def test_full_inbox_answers_at_once_with_an_error(autojump_clock: trio.abc.Clock) -> None:
    sink = Sink()
    tools = {"slow": RegisteredTool(Sleeper(5.0))}
    async with open_tool_runner(tools, sink, inbox=1, max_running=1) as runner:
        # Without yielding, the dispatcher cannot empty the one-slot inbox.
        runner._inbox.send_nowait(ToolUse("a", "slow", "{}"))
        await runner.submit(ToolUse("b", "slow", "{}"))
        assert error_of(sink.results[0]) == "too many tool calls at once"
        await trio.sleep(0.1)
        await runner.submit(ToolUse("c", "slow", "{}"))  # "a" is running: no room
        await trio.sleep(6)
    results = sink.by_id()
    assert set(results) == {"a", "b", "c"}
    assert error_of(results["c"]) == "too many tools running"
    assert not results["a"].is_error


async def test_exactly_one_result_per_use_under_a_mixed_load(
    autojump_clock: trio.abc.Clock,
) -> None:
    sink = Sink()
    tools = {
        "ok": RegisteredTool(Sleeper(0.5)),
        "slow": RegisteredTool(Sleeper(60), timeout=1),
        "bad": RegisteredTool(Raiser(ToolFailed("no"))),
    }
    names = ["ok", "slow", "bad", "missing"]
    async with open_tool_runner(tools, sink, inbox=64, max_running=64) as runner:
        for i in range(40):
            await runner.submit(ToolUse(f"u{i}", names[i % 4], "{}"))
        await trio.sleep(5)
    ids = [r.tool_use_id for r in sink.results]
    assert sorted(ids) == sorted(f"u{i}" for i in range(40))
    assert len(ids) == len(set(ids))


async def test_follow_up_runs_after_the_result_is_delivered(
    autojump_clock: trio.abc.Clock,
) -> None:
    sink = Sink()
    seen: list[int] = []

    @attrs.define
    class Ending:
        async def run(self, arguments: Mapping[str, object]) -> ToolOutcome:
            async def then() -> None:
                seen.append(len(sink.results))

            await trio.lowlevel.checkpoint()
            return ToolOutcome('{"status":"ending"}', then=then)

    async with open_tool_runner({"end": RegisteredTool(Ending())}, sink) as runner:
        await runner.submit(ToolUse("e", "end", "{}"))
        await trio.sleep(1)
    assert seen == [1]  # the result had been delivered when the follow-up ran


async def test_an_undeliverable_result_is_counted_not_raised(
    autojump_clock: trio.abc.Clock,
) -> None:
    sink = Sink(fail=True)
    async with open_tool_runner({"echo": RegisteredTool(Sleeper(0))}, sink) as runner:
        await runner.submit(ToolUse("u", "echo", "{}"))
        await trio.sleep(1)
        assert runner.statistics.undelivered == 1


async def test_leaving_the_block_cancels_running_tools(autojump_clock: trio.abc.Clock) -> None:
    sink = Sink()
    start = trio.current_time()
    async with open_tool_runner({"slow": RegisteredTool(Sleeper(20), timeout=30)}, sink) as r:
        await r.submit(ToolUse("u", "slow", "{}"))
        await trio.sleep(1)
    assert trio.current_time() - start == pytest.approx(1.0, abs=0.1)
    assert sink.results == []
