"""A call applies its assistant's definition: front-matter settings over the daemon's
defaults reach ``sessionStart`` and ``promptStart``; only the prompt is sent as SYSTEM text."""

from __future__ import annotations

import logging

import pytest
import trio

from actors.assistant_definition import language_instruction
from actors.errors import PromptInvalid
from devkit.fake_prompt_store import FakePromptStore
from sessions.config import CallSettings
from tests.daemon.fakes import FakeSonic, TwilioPeer
from tests.daemon.test_call_channel import run_scenario, send_frames, ulaw_frames

DEFAULTS = CallSettings(
    voice_id="matthew", endpointing_sensitivity="MEDIUM", max_tokens=1024, top_p=0.9,
    temperature=0.7,
)  # fmt: skip


async def short_call(peer: TwilioPeer, sonic: FakeSonic) -> None:
    await peer.start()
    await send_frames(peer, ulaw_frames(10))
    await trio.sleep(1)
    await peer.stop()


def store_with(text: str) -> FakePromptStore:
    store = FakePromptStore()
    store.put("esther", text)
    return store


async def test_front_matter_settings_reach_session_start_and_prompt_start(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    store = store_with(
        "---\nvoice: tiffany\nendpointing: HIGH\ntemperature: 0.2\ntop_p: 0.5\n"
        "max_tokens: 300\n---\nYou are Esther.\n"
    )
    caplog.set_level(logging.INFO, logger="novavoice.call")
    summary, _, sonic, _ = await run_scenario(short_call, store=store, settings=DEFAULTS)
    sent = sonic.streams[0].sent
    assert sent[0]["sessionStart"] == {
        "inferenceConfiguration": {"maxTokens": 300, "topP": 0.5, "temperature": 0.2},
        "turnDetectionConfiguration": {"endpointingSensitivity": "HIGH"},
    }
    assert sent[1]["promptStart"]["audioOutputConfiguration"]["voiceId"] == "tiffany"
    # The front matter configures the call; only the prompt is the SYSTEM text.
    assert sent[2]["contentStart"]["role"] == "SYSTEM"
    assert sent[3]["textInput"]["content"] == "You are Esther.\n"
    # The call logs the version it used, with the settings it applied.
    [record] = [r for r in caplog.records if getattr(r, "event", None) == "call_prompt"]
    assert record.version_id == summary.prompt_version == "v1"  # type: ignore[attr-defined]
    assert (record.voice, record.temperature, record.max_tokens) == ("tiffany", 0.2, 300)  # type: ignore[attr-defined]


async def test_unset_settings_keep_the_daemon_defaults(autojump_clock: trio.abc.Clock) -> None:
    store = store_with("---\nvoice: amy\n---\nYou are Esther.\n")
    defaults = CallSettings(
        voice_id="matthew", endpointing_sensitivity="LOW", max_tokens=777, top_p=0.8,
        temperature=0.6,
    )  # fmt: skip
    _, _, sonic, _ = await run_scenario(short_call, store=store, settings=defaults)
    sent = sonic.streams[0].sent
    assert sent[0]["sessionStart"] == {
        "inferenceConfiguration": {"maxTokens": 777, "topP": 0.8, "temperature": 0.6},
        "turnDetectionConfiguration": {"endpointingSensitivity": "LOW"},
    }
    assert sent[1]["promptStart"]["audioOutputConfiguration"]["voiceId"] == "amy"


async def test_a_plain_prompt_still_works_with_the_defaults(
    autojump_clock: trio.abc.Clock,
) -> None:
    store = store_with("You are Esther.\nKeep answers short.\n")
    _, _, sonic, _ = await run_scenario(short_call, store=store, settings=DEFAULTS)
    sent = sonic.streams[0].sent
    assert sent[0]["sessionStart"]["inferenceConfiguration"] == {
        "maxTokens": 1024, "topP": 0.9, "temperature": 0.7,
    }  # fmt: skip
    assert sent[1]["promptStart"]["audioOutputConfiguration"]["voiceId"] == "matthew"
    assert sent[3]["textInput"]["content"] == "You are Esther.\nKeep answers short.\n"


async def test_language_is_sent_as_an_instruction_after_the_prompt(
    autojump_clock: trio.abc.Clock,
) -> None:
    store = store_with("---\nlanguage: de-DE\nvoice: tina\n---\nDu bist Esther.\n")
    _, _, sonic, _ = await run_scenario(short_call, store=store, settings=DEFAULTS)
    system = sonic.streams[0].sent[3]["textInput"]["content"]
    assert system == "Du bist Esther.\n\n" + language_instruction("de-DE") + "\n"


async def test_every_stream_of_a_long_call_keeps_the_settings(
    autojump_clock: trio.abc.Clock,
) -> None:
    store = store_with("---\nvoice: lupe\ntemperature: 0.1\n---\nEres Esther.\n")

    async def long_call(peer: TwilioPeer, sonic: FakeSonic) -> None:
        await peer.start()
        await send_frames(peer, ulaw_frames(50))
        # A new version is published mid-call: this call keeps the one it started with.
        store.put("esther", "---\nvoice: carlos\n---\nOtra.\n")
        await trio.sleep(200)  # past rotate_after: a second stream opens
        await peer.stop()

    # A silent call: the idle timeout is raised so that only rotation is exercised.
    settings = CallSettings(rotate_after=90.0, idle_timeout=3600.0)
    summary, _, sonic, _ = await run_scenario(long_call, store=store, settings=settings)
    assert len(sonic.streams) >= 2
    for stream in sonic.streams:
        assert stream.sent[0]["sessionStart"]["inferenceConfiguration"]["temperature"] == 0.1
        assert stream.sent[1]["promptStart"]["audioOutputConfiguration"]["voiceId"] == "lupe"
        assert stream.sent[3]["textInput"]["content"] == "Eres Esther.\n"
    assert summary.prompt_version == "v1"


def test_an_invalid_definition_cannot_enter_the_fake_store() -> None:
    # The fake builds StoredPrompt like the S3 store: through the same guard.
    with pytest.raises(PromptInvalid, match="unknown_key at line 2, column 1"):
        FakePromptStore().put("esther", "---\nvoise: amy\n---\nHi\n")
