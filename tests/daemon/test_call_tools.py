"""The call's side of the tools: when the assistant's sentence is over, and how the call ends.

Under the autojump clock: the waits are exact in virtual time.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trio
import trustme

from actors.audio_codec import Encoding, MediaFormat
from actors.audio_pumps import AssistantAudio, AssistantCommand, OutboundQueue
from actors.close_codes import CloseCode
from devkit.tool_servers import FakeTwilioRest, serve_http
from sessions.call_records import CallEnd
from sessions.call_tools import CallTools, CallTransfer, _tool_context
from sessions.config import ToolSettings
from sessions.dialects.base import CallStarted
from sessions.playback_estimate import PlaybackEstimate

ACCOUNT = "AC" + "a" * 32


def start(carrier: str = "twilio") -> CallStarted:
    return CallStarted(
        carrier=carrier,
        call_id="CA1",
        stream_id="MZ1",
        assistant="a",
        media_format=MediaFormat(Encoding.MULAW, 8000),
        frame_bytes=160,
        account_id=ACCOUNT if carrier == "twilio" else None,
    )


def tools(
    queue: OutboundQueue[AssistantCommand],
    playback: PlaybackEstimate,
    ends: list[CallEnd],
    *,
    quiet: float = 1.5,
    wait: float = 15.0,
    carrier: str = "twilio",
) -> CallTools:
    return CallTools(
        start=start(carrier),
        queue=queue,
        playback=playback,
        end=ends.append,
        settings=ToolSettings(quiet_after_speech=quiet, speech_wait=wait),
    )


async def test_silence_waits_only_the_quiet_spell(autojump_clock: trio.abc.Clock) -> None:
    ends: list[CallEnd] = []
    t = tools(OutboundQueue(2.0), PlaybackEstimate(), ends, quiet=1.5)
    t0 = trio.current_time()
    await t.wait_speech_finished()
    assert trio.current_time() - t0 == pytest.approx(1.5)


async def test_a_tool_called_before_the_answer_waits_for_the_answer(
    autojump_clock: trio.abc.Clock,
) -> None:
    # The model calls the tool first, then speaks: the audio starts 0.4 s into the wait.
    playback = PlaybackEstimate()
    t = tools(OutboundQueue(2.0), playback, [], quiet=1.0)
    t0 = trio.current_time()

    async def answer() -> None:
        await trio.sleep(0.4)
        playback.sent(trio.current_time(), 2.0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(answer)
        await t.wait_speech_finished()
    assert trio.current_time() - t0 == pytest.approx(2.4, abs=0.06)


async def test_waits_until_the_sent_audio_has_played(autojump_clock: trio.abc.Clock) -> None:
    playback = PlaybackEstimate()
    t0 = trio.current_time()
    playback.sent(t0, 3.0)  # three seconds of speech just went to the carrier
    t = tools(OutboundQueue(2.0), playback, [])
    await t.wait_speech_finished()
    assert trio.current_time() - t0 == pytest.approx(3.0)


async def test_a_short_answer_still_gets_the_quiet_spell(autojump_clock: trio.abc.Clock) -> None:
    playback = PlaybackEstimate()
    t0 = trio.current_time()
    playback.sent(t0, 0.2)
    t = tools(OutboundQueue(2.0), playback, [], quiet=1.5)
    await t.wait_speech_finished()
    assert trio.current_time() - t0 == pytest.approx(1.5)


async def test_new_audio_during_the_wait_extends_it(autojump_clock: trio.abc.Clock) -> None:
    playback = PlaybackEstimate()
    t0 = trio.current_time()
    playback.sent(t0, 1.0)
    t = tools(OutboundQueue(2.0), playback, [], quiet=1.5)

    async def goodbye() -> None:
        await trio.sleep(1.2)  # the model answers the tool result: "Goodbye!"
        playback.sent(trio.current_time(), 2.0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(goodbye)
        await t.wait_speech_finished()
    assert trio.current_time() - t0 == pytest.approx(3.2, abs=0.06)


async def test_queued_audio_is_waited_for(autojump_clock: trio.abc.Clock) -> None:
    queue: OutboundQueue[AssistantCommand] = OutboundQueue(5.0)
    await queue.put(AssistantAudio(pcm=b"\0" * 16000, arrived=0.0), 1.0)
    playback = PlaybackEstimate()
    t = tools(queue, playback, [], quiet=0.5)
    t0 = trio.current_time()

    async def link() -> None:
        await trio.sleep(2.0)  # the carrier link takes it (XOFF held it so far)
        await queue.get()
        playback.sent(trio.current_time(), 1.0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(link)
        await t.wait_speech_finished()
    assert trio.current_time() - t0 == pytest.approx(3.0, abs=0.06)


async def test_the_wait_is_bounded(autojump_clock: trio.abc.Clock) -> None:
    playback = PlaybackEstimate()
    t0 = trio.current_time()
    playback.sent(t0, 600.0)  # ten minutes queued at the carrier
    t = tools(OutboundQueue(2.0), playback, [], wait=15.0)
    await t.wait_speech_finished()
    assert trio.current_time() - t0 == pytest.approx(15.0)


async def test_hang_up_ends_the_call_with_4310_after_the_sentence(
    autojump_clock: trio.abc.Clock,
) -> None:
    playback = PlaybackEstimate()
    t0 = trio.current_time()
    playback.sent(t0, 2.0)
    ends: list[CallEnd] = []
    t = tools(OutboundQueue(2.0), playback, ends)
    await t.hang_up_after_speech()
    assert trio.current_time() - t0 == pytest.approx(2.0)
    assert ends == [CallEnd("assistant_hang_up", CloseCode.ASSISTANT_HANG_UP, "assistant hung up")]


def test_transfer_ends_the_call_with_4311() -> None:
    ends: list[CallEnd] = []
    tools(OutboundQueue(2.0), PlaybackEstimate(), ends).end_transferred()
    assert ends == [CallEnd("transferred", CloseCode.TRANSFERRED, "call transferred")]


def test_the_twilio_client_needs_a_token_and_uses_the_calls_account_by_default() -> None:
    import ssl

    ctx = ssl.create_default_context()
    t = tools(OutboundQueue(2.0), PlaybackEstimate(), [])
    settings = ToolSettings(twilio_api_base_url="http://127.0.0.1:1")
    no_token = _tool_context(
        t, assistant="a", settings=settings, twilio_auth_token=None, ssl_context=ctx, secrets={}
    )
    assert no_token.twilio is None
    with_token = _tool_context(
        t, assistant="a", settings=settings, twilio_auth_token="tok", ssl_context=ctx, secrets={}
    )
    assert with_token.twilio is not None
    assert with_token.twilio.account_sid == ACCOUNT
    assert with_token.twilio.call_url("CA1") == (
        f"http://127.0.0.1:1/2010-04-01/Accounts/{ACCOUNT}/Calls/CA1.json"
    )
    other = "AC" + "b" * 32
    configured = _tool_context(
        t,
        assistant="a",
        settings=ToolSettings(twilio_account_sid=other),
        twilio_auth_token="tok",
        ssl_context=ctx,
        secrets={},
    )
    assert configured.twilio is not None and configured.twilio.account_sid == other
    asterisk = tools(OutboundQueue(2.0), PlaybackEstimate(), [], carrier="asterisk")
    on_asterisk = _tool_context(
        asterisk,
        assistant="a",
        settings=settings,
        twilio_auth_token="t",
        ssl_context=ctx,
        secrets={},
    )
    assert on_asterisk.twilio is None


async def test_the_call_runner_reads_the_definition_at_the_first_tool_use(
    autojump_clock: trio.abc.Clock,
) -> None:
    import ssl

    from actors.assistant_tools import ToolSpec
    from actors.tool_calls import ToolResult, ToolUse
    from sessions.call_tools import open_call_tool_runner

    ends: list[CallEnd] = []
    playback = PlaybackEstimate()
    control = tools(OutboundQueue(2.0), playback, ends, quiet=1.0)
    asked: list[int] = []

    def specs() -> tuple[ToolSpec, ...]:
        asked.append(1)
        return (ToolSpec(name="bye", description="End the call", kind="hang_up"),)

    results: list[ToolResult] = []

    async def sink(result: ToolResult) -> None:
        await trio.lowlevel.checkpoint()
        results.append(result)

    async with open_call_tool_runner(
        specs,
        control,
        sink,
        assistant="a",
        settings=ToolSettings(quiet_after_speech=1.0),
        twilio_auth_token=None,
        ssl_context=ssl.create_default_context(),
        secrets={},
    ) as runner:
        assert asked == []  # the definition is not loaded yet: not asked
        t0 = trio.current_time()
        playback.sent(t0, 2.5)  # "Goodbye, have a nice day."
        await runner.submit(ToolUse("u1", "bye", "{}"))
        await runner.submit(ToolUse("u2", "nope", "{}"))
        await trio.sleep(5)
    assert asked == [1]
    assert [r.tool_use_id for r in results] == ["u1", "u2"]
    assert not results[0].is_error and results[1].is_error
    assert [e.code for e in ends] == [CloseCode.ASSISTANT_HANG_UP]


# --- the fallback's transfer ----------------------------------------------------------------


async def _fallback_transfer(
    tmp_path: Path, carrier: str, *, token: str | None
) -> tuple[bool, FakeTwilioRest]:
    """``CallTransfer.transfer`` against the fake Twilio REST endpoint over loopback HTTPS."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    fake = FakeTwilioRest(ACCOUNT, "tok-1")
    ends: list[CallEnd] = []
    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            lambda task_status: serve_http(fake.handle, ssl_context=server, task_status=task_status)
        )
        settings = ToolSettings(
            ca_bundle=str(bundle), twilio_api_base_url=f"https://127.0.0.1:{port}"
        )
        control = CallTools(
            start=start(carrier),
            queue=OutboundQueue(2.0),
            playback=PlaybackEstimate(),
            end=ends.append,
            settings=settings,
        )
        transfer = CallTransfer(control, settings=settings, twilio_auth_token=token)
        done = await transfer.transfer("+15550001111")
        nursery.cancel_scope.cancel()
    return done, fake


async def test_the_fallback_transfers_a_twilio_call_through_the_rest_api(tmp_path: Path) -> None:
    done, fake = await _fallback_transfer(tmp_path, "twilio", token="tok-1")
    assert done
    [update] = fake.updates
    assert (update.account_sid, update.call_sid) == (ACCOUNT, "CA1")
    assert update.twiml == "<Response><Dial>+15550001111</Dial></Response>"


async def test_the_fallback_transfer_reports_a_refusal_and_asterisk(tmp_path: Path) -> None:
    done, fake = await _fallback_transfer(tmp_path, "twilio", token="wrong")
    assert not done and fake.updates == [] and fake.refused >= 1
    done, fake = await _fallback_transfer(tmp_path, "asterisk", token="tok-1")
    assert not done and fake.updates == [] and fake.refused == 0
