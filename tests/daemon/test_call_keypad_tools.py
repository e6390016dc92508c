"""One call with fakes: keypad entries reach Sonic as cross-modal text under the assistant's
``dtmf:`` policy (masked in the call log, counted in the service log), and tool uses go to
the runner or get an immediate error result."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest
import trio

from actors.sonic import output
from actors.tool_calls import ToolResult, ToolUse
from devkit.fake_prompt_store import FakePromptStore
from sessions.call import CallChannel
from tests.daemon.fakes import FakeSonic, FakeSonicStream, TwilioPeer
from tests.daemon.test_call_channel import IDS, run_scenario, send_frames, ulaw_frames


def user_texts(stream: FakeSonicStream) -> list[str]:
    """The text of every interactive USER block sent on ``stream``."""
    names = {
        e["contentStart"]["contentName"]
        for e in stream.sent
        if "contentStart" in e and e["contentStart"].get("interactive") is True
        and e["contentStart"]["type"] == "TEXT"
    }  # fmt: skip
    texts: dict[str, str] = {}
    for e in stream.sent:
        if "textInput" in e and e["textInput"]["contentName"] in names:
            name = e["textInput"]["contentName"]
            texts[name] = texts.get(name, "") + e["textInput"]["content"]
    return list(texts.values())


async def press(peer: TwilioPeer, keys: str, gap: float = 0.1) -> None:
    for key in keys:
        await peer.ws.send_message(peer.caller.dtmf(key))
        await trio.sleep(gap)


async def test_keys_become_entries_by_terminator_and_by_pause(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Real clock: the call log writes from a worker thread (see test_call_channel).
    store = FakePromptStore()
    store.put("esther", "---\ndtmf:\n  inter_digit_timeout_ms: 500\n---\nYou are Esther.\n")

    async def script(peer: TwilioPeer, sonic: FakeSonic) -> None:
        await peer.start()
        await send_frames(peer, ulaw_frames(5))
        await press(peer, "1234#")  # ends on the terminator
        await press(peer, "98")  # ends after the 0.5 s pause
        await trio.sleep(1.0)
        await peer.stop()

    caplog.set_level("DEBUG", logger="novavoice")
    log_path = tmp_path / "calls.jsonl"
    summary, _, sonic, _ = await run_scenario(script, store=store, call_log_path=log_path)
    assert user_texts(sonic.streams[0]) == [
        "[The caller entered on the phone keypad: 1234#]",
        "[The caller entered on the phone keypad: 98]",
    ]
    assert summary.dtmf_digits == 7
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [(x["role"], x["text"], x["kind"]) for x in lines] == [
        ("caller", "[The caller entered on the phone keypad: xxxx#]", "keypad"),
        ("caller", "[The caller entered on the phone keypad: xx]", "keypad"),
    ]
    entries = [r for r in caplog.records if getattr(r, "event", None) == "keypad_entry"]
    assert [(r.digits, r.ended_by) for r in entries] == [(4, "terminator"), (2, "timeout")]  # type: ignore[attr-defined]
    assert "1234" not in caplog.text and "98]" not in caplog.text


def tool_use(tool_use_id: str) -> output.ToolUse:
    return output.ToolUse(
        **IDS, content_id="k", tool_name="lookup", tool_use_id=tool_use_id, content='{"q":1}'
    )


async def test_a_tool_use_without_a_runner_is_answered_with_an_error(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def script(peer: TwilioPeer, sonic: FakeSonic) -> None:
        await peer.start()
        await send_frames(peer, ulaw_frames(5))
        sonic.streams[0].feed(tool_use("tu-1"))
        await send_frames(peer, ulaw_frames(5))
        await peer.stop()

    _, _, sonic, _ = await run_scenario(script)
    stream = sonic.streams[0]
    [start] = [
        e["contentStart"] for e in stream.sent if e.get("contentStart", {}).get("type") == "TOOL"
    ]
    assert start["toolResultInputConfiguration"]["toolUseId"] == "tu-1"
    [result] = [e["toolResult"]["content"] for e in stream.sent if "toolResult" in e]
    assert "error" in json.loads(result)
    # Audio kept flowing after the tool use.
    names = stream.names()
    assert "audioInput" in names[names.index("toolResult") :]


@attrs.define
class RecordingRunner:
    """A runner that records submissions; the test delivers results itself."""

    uses: list[ToolUse] = attrs.field(factory=list)

    async def submit(self, use: ToolUse) -> None:
        self.uses.append(use)
        await trio.lowlevel.checkpoint()


async def test_tool_uses_go_to_the_runner_and_its_result_to_sonic(
    autojump_clock: trio.abc.Clock,
) -> None:
    runner = RecordingRunner()
    channels: list[CallChannel] = []

    async def script(peer: TwilioPeer, sonic: FakeSonic) -> None:
        await peer.start()
        await send_frames(peer, ulaw_frames(5))
        # The runner is the conversation's: set it as h11-tools' call wiring would.
        conversation = channels[0].conversation
        assert conversation is not None
        conversation._tool_runner = runner
        sonic.streams[0].feed(tool_use("tu-2"))
        await send_frames(peer, ulaw_frames(5))
        assert runner.uses == [ToolUse(tool_use_id="tu-2", name="lookup", content='{"q":1}')]
        assert not any("toolResult" in e for e in sonic.streams[0].sent)
        await conversation.deliver_tool_result(ToolResult("tu-2", '{"status":"shipped"}'))
        await conversation.deliver_tool_result(ToolResult("tu-2", '{"status":"twice"}'))
        await send_frames(peer, ulaw_frames(2))
        await peer.stop()

    _, _, sonic, _ = await run_scenario(script, channels=channels)
    results = [e["toolResult"]["content"] for e in sonic.streams[0].sent if "toolResult" in e]
    assert results == ['{"status":"shipped"}']
