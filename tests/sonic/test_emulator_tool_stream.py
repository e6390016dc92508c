"""The emulator's tool calls over real sockets: scheduled and text-triggered ``toolUse``,
the reply after a result, and the exactly-one-result rule (minimal test-only h2 client)."""

from __future__ import annotations

import attrs

from actors.errors import SonicStreamError
from actors.sonic import events as ev
from actors.sonic.output import CompletionEnded, TextOutput, ToolUse
from devkit.emulator import open_emulator
from devkit.emulator.raw_client import FAST, config, connect, silence

TOOLS = [ev.ToolSpec(name="lookup", description="Look it up", input_schema='{"type":"object"}')]


async def answer(stream: object, tool_use_id: str, content: str) -> None:
    for event in ev.tool_result_block(
        prompt_name=stream.prompt,  # type: ignore[attr-defined]
        content_name=f"r-{content}",
        tool_use_id=tool_use_id,
        content=content,
    ):
        await stream.send(event)  # type: ignore[attr-defined]


async def test_scheduled_tool_use_then_one_result_then_a_reply() -> None:
    cfg = config(plan=attrs.evolve(FAST, tool_use_after=0.2))
    async with open_emulator(cfg) as emulator, connect(emulator) as conn:
        stream = await conn.open_stream()
        await stream.start_session(tools=TOOLS)
        await stream.send_audio(silence(0.3))
        items = await stream.until(lambda i: isinstance(i, ToolUse | Exception))
        [use] = [i for i in items if isinstance(i, ToolUse)]
        assert use.tool_name == "lookup"
        await answer(stream, use.tool_use_id, '{"found":true}')
        await stream.send_audio(silence(0.2))
        items = await stream.until(
            lambda i: (
                isinstance(i, Exception)
                or (isinstance(i, TextOutput) and i.content == "Done: lookup finished.")
            )
        )
        assert not [i for i in items if isinstance(i, Exception)]
        await stream.until(lambda i: isinstance(i, CompletionEnded | Exception))
        # A second result for the same tool use is refused, as Bedrock refuses it.
        await answer(stream, use.tool_use_id, '{"again":true}')
        items = await stream.until(lambda i: isinstance(i, Exception))
        [error] = [i for i in items if isinstance(i, SonicStreamError)]
        assert error.exception_type == "validationException"
        assert "exactly one toolResult" in str(error)
    stats = emulator.statistics()
    assert (stats.tool_uses, stats.tool_results, stats.tool_uses_unanswered) == (1, 1, 0)


async def test_a_text_matching_the_pattern_gets_a_tool_use_and_no_tools_no_tool_use() -> None:
    cfg = attrs.evolve(config(), tool_use_text_pattern=r"order \d+")
    async with open_emulator(cfg) as emulator, connect(emulator) as conn:
        stream = await conn.open_stream()
        await stream.start_session(tools=TOOLS)
        await stream.send_audio(silence(0.1))
        for event in ev.cross_modal_text(
            prompt_name=stream.prompt, content_name="t1", text="order 42"
        ):
            await stream.send(event)
        items = await stream.until(lambda i: isinstance(i, ToolUse | Exception))
        assert isinstance(items[-1], ToolUse)
        await stream.close_session()
    stats = emulator.statistics()
    assert stats.tool_uses == 1 and stats.tool_uses_unanswered == 1  # never answered
    assert stats.texts == ("order 42",) and stats.greetings == 0


async def test_a_result_for_an_unknown_tool_use_is_refused() -> None:
    async with open_emulator(config()) as emulator, connect(emulator) as conn:
        stream = await conn.open_stream()
        await stream.start_session(tools=TOOLS)
        await answer(stream, "never-issued", "{}")
        items = await stream.until(lambda i: isinstance(i, Exception))
        [error] = [i for i in items if isinstance(i, SonicStreamError)]
        assert "never issued" in str(error)
    assert emulator.statistics().validation_errors == 1
