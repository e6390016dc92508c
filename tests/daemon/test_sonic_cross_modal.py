"""The Sonic session's cross-modal input on trio's clock: the greeting, user text, tool
configuration, tool uses and their one result each, across rotations.

Runs under the autojump clock with the scripted :class:`FakeSonic`, which records every
event the session sends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from actors.errors import SonicStreamError
from actors.sonic import events, output
from actors.sonic.session import SessionOutput, SonicSession, greeting_request
from actors.tool_calls import ToolResult, ToolUse
from tests.daemon.fakes import FakeSonic, FakeSonicStream, new_session
from tests.daemon.test_call_channel import IDS, audio, audio_end, audio_start

TOOLS = (
    events.ToolSpec(name="hang_up", description="End the call", input_schema='{"type":"object"}'),
)


@asynccontextmanager
async def running_session(
    sonic: FakeSonic, *, rotate_after: float = 1000.0, greeting: str | None = None
) -> AsyncIterator[tuple[SonicSession, list[SessionOutput]]]:
    send, receive = trio.open_memory_channel[tuple[SessionOutput, float]](0)
    session = new_session(
        sonic,
        output_channel=send,
        rotate_after=rotate_after,
        tools=TOOLS,
        greeting=greeting,
    )
    received: list[SessionOutput] = []

    async def drain() -> None:
        async for item, _arrived in receive:
            received.append(item)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        await nursery.start(session.run)
        yield session, received
        nursery.cancel_scope.cancel()


def tool_use(tool_use_id: str, name: str = "hang_up") -> output.ToolUse:
    return output.ToolUse(
        **IDS, content_id="k", tool_name=name, tool_use_id=tool_use_id, content="{}"
    )


def text_blocks(stream: FakeSonicStream) -> list[tuple[str, bool, str]]:
    """(role, interactive, text) of every TEXT block sent on ``stream``."""
    starts: dict[str, dict[str, Any]] = {}
    texts: dict[str, list[str]] = {}
    for e in stream.sent:
        if "contentStart" in e and e["contentStart"]["type"] == "TEXT":
            starts[e["contentStart"]["contentName"]] = e["contentStart"]
            texts[e["contentStart"]["contentName"]] = []
        elif "textInput" in e:
            texts[e["textInput"]["contentName"]].append(e["textInput"]["content"])
    return [(s["role"], s["interactive"], "".join(texts[n])) for n, s in starts.items()]


def blocks_are_contiguous(stream: FakeSonicStream) -> bool:
    """No audioInput between any block's contentStart and its contentEnd."""
    audio_name = next(
        e["contentStart"]["contentName"]
        for e in stream.sent
        if "contentStart" in e and e["contentStart"]["type"] == "AUDIO"
    )
    open_block = None
    for e in stream.sent:
        name, body = next(iter(e.items()))
        if name == "contentStart" and body["contentName"] != audio_name:
            open_block = body["contentName"]
        elif name == "contentEnd" and body["contentName"] == open_block:
            open_block = None
        elif name == "audioInput" and open_block is not None:
            return False
    return True


async def test_greeting_is_one_user_text_after_the_audio_block_and_never_repeated(
    autojump_clock: trio.abc.Clock,
) -> None:
    sonic = FakeSonic()
    async with running_session(sonic, rotate_after=100.0, greeting="Hello, Esther here.") as (
        session,
        _,
    ):
        first = sonic.streams[0]
        names = first.names()
        audio_at = next(
            i for i, e in enumerate(first.sent) if e.get("contentStart", {}).get("type") == "AUDIO"
        )
        # Right after the audio block opens, before any audio: contentStart, textInput, end.
        assert names[audio_at + 1 : audio_at + 4] == ["contentStart", "textInput", "contentEnd"]
        assert text_blocks(first)[-1] == ("USER", True, greeting_request("Hello, Esther here."))
        assert "Hello, Esther here." in greeting_request("Hello, Esther here.")
        await trio.sleep(150)  # one proactive rotation
        assert session.statistics.proactive_rotations == 1
    second = sonic.streams[1]
    # The second leg replays the request as history (interactive false), asks nothing new.
    assert [b for b in text_blocks(second) if b[1]] == []
    assert ("USER", False, greeting_request("Hello, Esther here.")) in text_blocks(second)


async def test_no_greeting_sends_no_text_after_the_audio_block(
    autojump_clock: trio.abc.Clock,
) -> None:
    sonic = FakeSonic()
    async with running_session(sonic):
        pass
    assert [b for b in text_blocks(sonic.streams[0]) if b[1]] == []


async def test_prompt_start_offers_the_tools_with_tool_choice_auto(
    autojump_clock: trio.abc.Clock,
) -> None:
    sonic = FakeSonic()
    async with running_session(sonic):
        pass
    [start] = [e["promptStart"] for e in sonic.streams[0].sent if "promptStart" in e]
    assert start["toolConfiguration"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "hang_up",
                    "description": "End the call",
                    "inputSchema": {"json": '{"type":"object"}'},
                }
            }
        ],
        "toolChoice": {"auto": {}},
    }


async def test_send_text_never_interleaves_with_audio(autojump_clock: trio.abc.Clock) -> None:
    sonic = FakeSonic()
    async with running_session(sonic) as (session, _):

        async def pump_audio() -> None:
            for _ in range(200):
                await session.send_audio(bytes(320))

        long_text = "digit " * 600  # several textInput events in one block
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump_audio)
            for _ in range(3):
                await session.send_text(long_text)
    stream = sonic.streams[0]
    assert stream.names().count("audioInput") == 200
    assert [b for b in text_blocks(stream) if b[1]] == [("USER", True, long_text)] * 3
    assert blocks_are_contiguous(stream)
    assert session.history.replay()[-1].text.startswith("digit")


async def test_tool_use_goes_down_the_channel_and_gets_exactly_one_result(
    autojump_clock: trio.abc.Clock,
) -> None:
    sonic = FakeSonic()
    async with running_session(sonic) as (session, received):
        stream = sonic.streams[0]
        stream.feed(tool_use("tu-1"))
        stream.feed(tool_use("tu-1"))  # a repeated id is not a second tool use
        await trio.sleep(1)
        assert [r for r in received if isinstance(r, ToolUse)] == [
            ToolUse(tool_use_id="tu-1", name="hang_up", content="{}")
        ]
        assert not any(isinstance(r, output.ToolUse) for r in received)
        assert session.pending_tool_uses == 1
        await session.send_tool_result(ToolResult("tu-1", '{"ok":true}'))
        await session.send_tool_result(ToolResult("tu-1", '{"ok":"again"}'))  # dropped
        await session.send_tool_result(ToolResult("never-asked", "{}"))  # dropped
        assert session.pending_tool_uses == 0
    starts = [e["contentStart"] for e in stream.sent if "contentStart" in e]
    tool_starts = [s for s in starts if s["type"] == "TOOL"]
    assert len(tool_starts) == 1
    assert tool_starts[0]["toolResultInputConfiguration"]["toolUseId"] == "tu-1"
    assert [e["toolResult"]["content"] for e in stream.sent if "toolResult" in e] == ['{"ok":true}']
    assert blocks_are_contiguous(stream)


async def test_proactive_rotation_waits_for_a_pending_tool(
    autojump_clock: trio.abc.Clock,
) -> None:
    sonic = FakeSonic()
    async with running_session(sonic, rotate_after=10.0) as (session, _):
        sonic.streams[0].feed(tool_use("tu-2"))
        await trio.sleep(20)
        assert len(sonic.streams) == 1  # due at 10 s, but a result is owed on this leg
        await session.send_tool_result(ToolResult("tu-2", '{"done":1}'))
        await trio.sleep(2)
        assert len(sonic.streams) == 2
    assert any("toolResult" in e for e in sonic.streams[0].sent)
    assert not any("toolResult" in e for e in sonic.streams[1].sent)


async def test_a_result_for_a_replaced_leg_goes_to_the_new_leg_as_text(
    autojump_clock: trio.abc.Clock,
) -> None:
    sonic = FakeSonic()
    async with running_session(sonic) as (session, received):
        first = sonic.streams[0]
        first.feed(tool_use("tu-3", name="lookup"))
        await trio.sleep(1)
        assert any(isinstance(r, ToolUse) for r in received)
        # The stream hits its limit while the tool runs: a reactive rotation.
        first.feed(SonicStreamError("modelTimeoutException", "timed out"))
        await trio.sleep(1)
        assert len(sonic.streams) == 2
        await session.send_tool_result(ToolResult("tu-3", '{"balance":12}', is_error=False))
    second = sonic.streams[1]
    assert not any("toolResult" in e for e in second.sent)  # it never saw tu-3
    [late] = [b for b in text_blocks(second) if b[1]]
    assert late[0] == "USER" and "lookup" in late[2] and '{"balance":12}' in late[2]


async def test_audio_output_still_flows_while_a_tool_is_pending(
    autojump_clock: trio.abc.Clock,
) -> None:
    sonic = FakeSonic()
    async with running_session(sonic) as (_, received):
        stream = sonic.streams[0]
        stream.feed(tool_use("tu-4"))
        stream.feed(audio_start("a"))
        stream.feed(audio("a", bytes(320)))
        stream.feed(audio_end("a"))
        await trio.sleep(1)
    assert sum(isinstance(r, output.AudioOutput) for r in received) == 1


async def test_a_reactive_rotation_does_not_repeat_the_greeting(
    autojump_clock: trio.abc.Clock,
) -> None:
    sonic = FakeSonic()
    async with running_session(sonic, greeting="Hi there.") as (session, _):
        sonic.streams[0].feed(SonicStreamError("modelTimeoutException", "timed out"))
        await trio.sleep(1)
        assert session.statistics.reactive_rotations == 1
    assert [b for b in text_blocks(sonic.streams[0]) if b[1]] != []
    assert [b for b in text_blocks(sonic.streams[1]) if b[1]] == []
