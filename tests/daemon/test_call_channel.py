"""The call channel alone: a Twilio peer and a scripted Sonic over memory streams.

Runs under the autojump clock (no sockets, no threads), so minutes of call time pass
instantly and every assertion is about what was sent, never about how long it took.
"""

from __future__ import annotations

import json
import random
from base64 import b64decode
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from actors.audio_codec import pcm16_to_ulaw, ulaw_to_pcm16
from actors.close_codes import CloseCode
from actors.errors import SonicHTTPError, SonicStreamError
from actors.fallback_audio import FallbackClips, shipped_fallback_clips
from actors.prompt_cache import PromptCache
from actors.sonic import output
from actors.sonic.recovery import RecoveryPolicy
from devkit.fake_prompt_store import FakePromptStore
from sessions.call import CallChannel
from sessions.call_records import CallDeps, CallEnd, CallSummary
from sessions.config import CallSettings
from sessions.dialects.twilio import TwilioDialect
from sessions.logs import open_call_log
from sessions.metrics import Metrics
from tests.daemon.fakes import FakeSonic, FakeSonicStream, TwilioPeer, open_fetcher, ws_pair

Script = Callable[[TwilioPeer, FakeSonic], Awaitable[None]]

IDS: dict[str, Any] = {"session_id": "s", "prompt_name": "p", "completion_id": "c"}


def audio_start(content_id: str) -> output.ContentStarted:
    return output.ContentStarted(
        **IDS, content_id=content_id, kind=output.ContentKind.AUDIO, role="ASSISTANT"
    )


def audio(content_id: str, pcm: bytes) -> output.AudioOutput:
    return output.AudioOutput(**IDS, content_id=content_id, pcm=pcm)


def audio_end(content_id: str, reason: str = "END_TURN") -> output.ContentEnded:
    return output.ContentEnded(
        **IDS, content_id=content_id, kind=output.ContentKind.AUDIO, role="ASSISTANT",
        stop_reason=reason,
    )  # fmt: skip


def barge_in(content_id: str) -> output.TextOutput:
    return output.TextOutput(
        **IDS, content_id=content_id, role="ASSISTANT", content='{ "interrupted" : true }',
        is_barge_in=True,
    )  # fmt: skip


def ulaw_frames(n: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    return [bytes(rng.randrange(256) for _ in range(160)) for _ in range(n)]


def pcm_tone(samples: int) -> bytes:
    return b"".join(
        ((i * 97) % 4000 - 2000).to_bytes(2, "little", signed=True) for i in range(samples)
    )


async def run_scenario(
    script: Script,
    *,
    sonic: FakeSonic | None = None,
    store: FakePromptStore | None = None,
    settings: CallSettings | None = None,
    call_log_path: Path | None = None,
    peer_reads: bool = True,
    channels: list[CallChannel] | None = None,
    path: str = "/twilio/esther",
    caches: list[PromptCache] | None = None,
    fallback_clips: FallbackClips | None = None,
    recovery: RecoveryPolicy | None = None,
) -> tuple[CallSummary, TwilioPeer, FakeSonic, Metrics]:
    sonic = sonic or FakeSonic()
    if store is None:
        store = FakePromptStore()
        store.put("esther", "You are Esther, a helpful receptionist.")
    metrics = Metrics(process_metrics=False)
    result: list[CallSummary] = []
    async with (
        open_fetcher(store) as (fetcher, cache),
        open_call_log(call_log_path) as call_log,
        ws_pair(lockstep=not peer_reads) as (server_ws, client_ws),
    ):
        if caches is not None:
            caches.append(cache)
        deps = CallDeps(
            prompts=fetcher,
            sonic=sonic,
            metrics=metrics,
            call_log=call_log,
            settings=settings or CallSettings(),
            fallback_clips=fallback_clips or shipped_fallback_clips(),
            # The fake never answers on its own: no stall watchdog unless a test asks for it.
            recovery=recovery or RecoveryPolicy(stall_timeout=0.0),
        )
        peer = TwilioPeer(client_ws)
        async with trio.open_nursery() as nursery:
            if peer_reads:
                nursery.start_soon(peer.receive_all)

            async def call() -> None:
                with metrics.call("twilio") as cm:
                    dialect = TwilioDialect(path=path)
                    channel = CallChannel(server_ws, dialect, deps, cm)
                    if channels is not None:
                        channels.append(channel)
                    result.append(await channel.run())

            nursery.start_soon(call)
            await script(peer, sonic)
    return result[0], peer, sonic, metrics


async def send_frames(peer: TwilioPeer, frames: list[bytes]) -> None:
    for frame in frames:
        await peer.media(frame)
        await trio.sleep(0.02)


async def test_full_call_setup_audio_both_ways_and_hangup(autojump_clock: trio.abc.Clock) -> None:
    frames = ulaw_frames(100)
    answer = pcm_tone(8000)  # one second at 8 kHz

    async def script(peer: TwilioPeer, sonic: FakeSonic) -> None:
        await peer.start()
        await send_frames(peer, frames)
        stream = sonic.streams[0]
        for item in (audio_start("a1"), audio("a1", answer[:6000]), audio("a1", answer[6000:])):
            stream.feed(item)
        stream.feed(audio_end("a1"))
        await trio.sleep(1)
        await peer.stop()

    summary, peer, sonic, metrics = await run_scenario(script)
    # Setup (upgrade → first audioInput) is stamped once per call.
    assert metrics.registry.get_sample_value("novavoice_call_setup_seconds_count") == 1
    stream = sonic.streams[0]
    names = stream.names()
    assert names[:6] == [
        "sessionStart", "promptStart", "contentStart", "textInput", "contentEnd", "contentStart",
    ]  # fmt: skip
    assert stream.sent[1]["promptStart"]["audioOutputConfiguration"]["sampleRateHertz"] == 8000
    assert stream.sent[3]["textInput"]["content"] == "You are Esther, a helpful receptionist."
    assert stream.sent[5]["contentStart"]["audioInputConfiguration"]["sampleRateHertz"] == 8000
    # Every caller frame reached Sonic, in order, as PCM16 (then comfort silence).
    expected = ulaw_to_pcm16(b"".join(frames))
    assert stream.audio_pcm()[: len(expected)] == expected
    chunk_sizes = {len(e["audioInput"]["content"]) for e in stream.sent if "audioInput" in e}
    assert chunk_sizes == {684}  # base64 of 512 bytes = 32 ms at 8 kHz, every chunk
    # Every byte of the answer reached the carrier, μ-law encoded, then a mark.
    assert peer.audio()[: len(answer) // 2] == pcm16_to_ulaw(answer)
    assert len(peer.audio()) == len(answer) // 2
    assert peer.received[-1]["event"] == "mark"
    assert summary.end == CallEnd("hangup", CloseCode.NORMAL, "call ended")
    assert summary.first_audio_seconds is not None
    assert stream.closed


async def test_audio_before_sonic_is_ready_is_kept(autojump_clock: trio.abc.Clock) -> None:
    frames = ulaw_frames(150, seed=2)  # 3 s of audio while Sonic takes 2 s to open

    async def script(peer: TwilioPeer, sonic: FakeSonic) -> None:
        await peer.start()
        await send_frames(peer, frames)
        await trio.sleep(1)
        await peer.stop()

    summary, _, sonic, _ = await run_scenario(script, sonic=FakeSonic(open_delay=2.0))
    expected = ulaw_to_pcm16(b"".join(frames))
    assert sonic.streams[0].audio_pcm()[: len(expected)] == expected
    assert summary.pre_stream_drops == 0


async def test_pre_stream_buffer_is_bounded_and_counts_drops(
    autojump_clock: trio.abc.Clock,
) -> None:
    frames = ulaw_frames(100, seed=3)

    async def script(peer: TwilioPeer, sonic: FakeSonic) -> None:
        await peer.start()
        await send_frames(peer, frames)
        await trio.sleep(5)
        await peer.stop()

    settings = CallSettings(pre_stream_seconds=1.0)  # room for 50 frames
    summary, _, sonic, metrics = await run_scenario(
        script, sonic=FakeSonic(open_delay=4.0), settings=settings
    )
    assert summary.pre_stream_drops == 50
    kept = ulaw_to_pcm16(b"".join(frames[:50]))
    assert sonic.streams[0].audio_pcm()[: len(kept)] == kept
    drops = metrics.registry.get_sample_value(
        "novavoice_queue_drops_total", {"queue": "pre_stream"}
    )
    assert drops == 50


async def test_silent_carrier_gets_comfort_silence(autojump_clock: trio.abc.Clock) -> None:
    async def script(peer: TwilioPeer, sonic: FakeSonic) -> None:
        await peer.start()
        await trio.sleep(10)  # the carrier sends no media at all for 10 s
        await peer.stop()

    summary, _, sonic, _ = await run_scenario(script)
    stream = sonic.streams[0]
    pcm = stream.audio_pcm()
    # One 32 ms chunk per silence_after (0.2 s) of quiet: about 50 in 10 s, all zero.
    assert 40 <= summary.audio_in.silence_chunks_sent <= 51
    assert pcm == bytes(len(pcm)) and len(pcm) == 512 * summary.audio_in.silence_chunks_sent


async def test_barge_in_clears_queued_audio_and_drops_the_rest_of_that_answer(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def script(peer: TwilioPeer, sonic: FakeSonic) -> None:
        await peer.start()
        stream = sonic.streams[0] if sonic.streams else None
        while stream is None:
            await trio.sleep(0.01)
            stream = sonic.streams[0] if sonic.streams else None
        stream.feed(audio_start("a1"))
        stream.feed(audio("a1", pcm_tone(16000)))  # two seconds
        stream.feed(barge_in("a1"))
        stream.feed(audio("a1", pcm_tone(8000)))  # late audio of the interrupted answer
        stream.feed(audio_end("a1", "INTERRUPTED"))
        stream.feed(audio_start("a2"))
        stream.feed(audio("a2", pcm_tone(800)))
        stream.feed(audio_end("a2"))
        await trio.sleep(1)
        await peer.stop()

    summary, peer, _, metrics = await run_scenario(script)
    kinds = [m["event"] for m in peer.received]
    assert kinds.count("clear") == 1
    clear_at = kinds.index("clear")
    before, after = peer.received[:clear_at], peer.received[clear_at + 1 :]

    # The first answer (100 frames) was cut short: whatever had not gone out when the
    # barge-in came was dropped, from the queue or half-way through being sent.
    # Counted in audio bytes (8 kHz mu-law: one byte a sample), whatever the message size.
    def audio_bytes(messages: list[dict[str, Any]]) -> int:
        return sum(len(b64decode(m["media"]["payload"])) for m in messages if m["event"] == "media")

    assert audio_bytes(before) < 16000
    # After the clear: only the next answer (800 samples = 5 frames), then its mark.
    assert audio_bytes(after) == 800
    assert after[-1]["event"] == "mark"
    assert summary.barge_ins == 1
    assert (
        metrics.registry.get_sample_value("novavoice_barge_ins_total", {"carrier": "twilio"}) == 1
    )


async def test_a_hostile_name_is_refused_at_the_call_boundary(
    autojump_clock: trio.abc.Clock,
) -> None:
    store = FakePromptStore()

    async def start(peer: TwilioPeer, sonic: FakeSonic) -> None:
        await peer.start()

    caches: list[PromptCache] = []
    summary, _, sonic, _ = await run_scenario(
        start, store=store, path="/twilio/..%2Fsecrets", caches=caches
    )
    assert summary.end is not None
    assert (summary.end.reason, summary.end.code) == ("prompt_error", CloseCode.NO_ASSISTANT)
    assert "'../secrets'" in summary.end.text
    assert store.fetch_count == 0 and sonic.streams == []
    # Refused at the boundary: the prompt path never saw the name.
    assert caches[0].statistics().misses == 0


async def test_missing_prompt_ends_the_call_before_sonic(autojump_clock: trio.abc.Clock) -> None:
    store = FakePromptStore()
    store.put("esther", "x")

    async def missing(peer: TwilioPeer, sonic: FakeSonic) -> None:
        await peer.start()

    store.delete("esther")
    summary, _, sonic, _ = await run_scenario(missing, store=store)
    assert summary.end is not None
    assert summary.end.code == CloseCode.PROMPT_NOT_FOUND
    assert summary.end.reason == "prompt_error"
    assert "esther" in summary.end.text and "assistants/" not in summary.end.text
    assert sonic.streams == []


@pytest.mark.parametrize(
    ("error", "code", "label"),
    [
        # Transient, with no recovery budget: the call still ends with the fault's own code.
        (
            SonicStreamError("throttlingException", "slow down"),
            CloseCode.SONIC_THROTTLED,
            "SonicUnrecoverable",
        ),
        (SonicStreamError("validationException", "bad event"), CloseCode.SONIC_FAILED, None),
        (
            SonicStreamError("internalServerException", "oops"),
            CloseCode.SONIC_FAILED,
            "SonicUnrecoverable",
        ),
    ],
)
async def test_sonic_error_mid_call_closes_the_carrier_with_its_code(
    autojump_clock: trio.abc.Clock, error: Exception, code: int, label: str | None
) -> None:
    async def script(peer: TwilioPeer, sonic: FakeSonic) -> None:
        await peer.start()
        await send_frames(peer, ulaw_frames(10))
        sonic.streams[0].feed(error)

    summary, _, sonic, metrics = await run_scenario(script, recovery=RecoveryPolicy(max_attempts=0))
    assert summary.end is not None
    assert (summary.end.reason, summary.end.code) == ("sonic_error", code)
    assert sonic.streams[0].closed
    assert (
        metrics.registry.get_sample_value(
            "novavoice_sonic_errors_total", {"type": label or "SonicStreamError"}
        )
        == 1
    )


async def test_a_transient_sonic_error_mid_call_is_recovered_and_counted(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def script(peer: TwilioPeer, sonic: FakeSonic) -> None:
        await peer.start()
        await send_frames(peer, ulaw_frames(10))
        sonic.streams[0].feed(SonicStreamError("internalServerException", "oops"))
        await send_frames(peer, ulaw_frames(100))
        await peer.stop()

    summary, _, sonic, metrics = await run_scenario(script)
    assert summary.end is not None and summary.end.reason == "hangup"
    assert len(sonic.streams) == 2
    assert (summary.sonic_recoveries, summary.sonic_recovery_attempts) == (1, 1)
    assert summary.sonic_failures == {"internal_error": 1}
    recovered = metrics.registry.get_sample_value(
        "novavoice_sonic_recoveries_total", {"reason": "internal_error", "outcome": "recovered"}
    )
    assert recovered == 1


async def test_carrier_that_never_starts_is_closed_at_the_deadline(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def script(peer: TwilioPeer, sonic: FakeSonic) -> None:
        await trio.sleep(60)

    summary, _, sonic, _ = await run_scenario(script, settings=CallSettings(start_timeout=5))
    assert summary.end is not None and summary.end.code == CloseCode.START_TIMEOUT
    assert sonic.streams == []


async def test_malformed_carrier_message_gets_its_protocol_close_code(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def script(peer: TwilioPeer, sonic: FakeSonic) -> None:
        await peer.start()
        await peer.ws.send_message('{"event": "media", "media": {"payload": "***"}}')
        await trio.sleep(1)

    summary, _, _, _ = await run_scenario(script)
    assert summary.end is not None
    assert summary.end.reason == "protocol_error"
    assert 4000 <= summary.end.code < 4100


def text_start(content_id: str, role: str, stage: str) -> output.ContentStarted:
    return output.ContentStarted(
        **IDS, content_id=content_id, kind=output.ContentKind.TEXT, role=role,
        generation_stage=output.GenerationStage(stage),
    )  # fmt: skip


def text(content_id: str, role: str, content: str) -> output.TextOutput:
    return output.TextOutput(
        **IDS, content_id=content_id, role=role, content=content, is_barge_in=False
    )


def setup_texts(stream: FakeSonicStream) -> list[tuple[str, str]]:
    """(role, text) of every TEXT block a stream was set up with, in order."""
    roles = {
        e["contentStart"]["contentName"]: e["contentStart"]["role"]
        for e in stream.sent
        if "contentStart" in e and e["contentStart"]["type"] == "TEXT"
    }
    return [
        (roles[e["textInput"]["contentName"]], e["textInput"]["content"])
        for e in stream.sent
        if "textInput" in e
    ]


async def test_long_call_rotates_streams_without_losing_audio(
    autojump_clock: trio.abc.Clock,
) -> None:
    frames = ulaw_frames(1750, seed=5)  # 35 s of caller audio; streams last 10 s each

    async def script(peer: TwilioPeer, sonic: FakeSonic) -> None:
        await peer.start()
        await send_frames(peer, frames[:100])
        first = sonic.streams[0]
        for item in (
            text_start("u1", "USER", "FINAL"),
            text("u1", "USER", "I need an appointment."),
            text_start("s1", "ASSISTANT", "SPECULATIVE"),
            text("s1", "ASSISTANT", "Sure, let me check"),
            text_start("a1", "ASSISTANT", "FINAL"),
            text("a1", "ASSISTANT", "Sure, what day suits you?"),
        ):
            first.feed(item)
        await send_frames(peer, frames[100:])
        await trio.sleep(1)
        await peer.stop()

    summary, _, sonic, metrics = await run_scenario(
        script, settings=CallSettings(rotate_after=10.0)
    )
    assert summary.end is not None and summary.end.reason == "hangup"
    assert len(sonic.streams) == 4  # opened at about 0, 11, 22 and 33 s
    assert all(stream.closed for stream in sonic.streams)
    # Every caller frame reached Sonic exactly once, in order, across the streams.
    expected = ulaw_to_pcm16(b"".join(frames))
    sent = b"".join(stream.audio_pcm() for stream in sonic.streams)
    assert sent[: len(expected)] == expected
    assert len(sent) - len(expected) < 512 * 60  # then only comfort silence, until the hang-up
    # Each new stream was set up with the system prompt, then the conversation so far
    # (final transcripts only, no speculative text), before its audio block.
    later = sonic.streams[1]
    assert setup_texts(later) == [
        ("SYSTEM", "You are Esther, a helpful receptionist."),
        ("USER", "I need an appointment."),
        ("ASSISTANT", "Sure, what day suits you?"),
    ]
    names = later.names()
    assert names.index("audioInput") > max(i for i, n in enumerate(names) if n == "textInput")
    opens = metrics.registry.get_sample_value("novavoice_sonic_stream_opens_total")
    assert opens == 4


async def test_stream_time_limit_continues_on_a_new_stream(
    autojump_clock: trio.abc.Clock,
) -> None:
    frames = ulaw_frames(400, seed=6)

    async def script(peer: TwilioPeer, sonic: FakeSonic) -> None:
        await peer.start()
        await send_frames(peer, frames[:150])
        first = sonic.streams[0]
        first.kill()  # sends fail from now on, as on a stream the server ended
        await send_frames(peer, frames[150:160])
        first.feed(SonicStreamError("modelTimeoutException", "Model has timed out"))
        await send_frames(peer, frames[160:])
        await trio.sleep(1)
        await peer.stop()

    channels: list[CallChannel] = []
    # rotate_after: the 360 s default
    summary, _, sonic, _ = await run_scenario(script, channels=channels)
    assert summary.end is not None and summary.end.reason == "hangup"
    assert len(sonic.streams) == 2
    expected = ulaw_to_pcm16(b"".join(frames))
    # The new stream first hears the caller's unanswered speech again (the noise counts as
    # speech and nothing answered it), then the chunks refused by the dead stream and the
    # rest: no chunk is lost, and nothing but that speech is sent twice.
    session = channels[0].conversation.session  # type: ignore[union-attr]
    assert session is not None
    resent = session.statistics.resent_speech_chunks * 512
    first, second = (stream.audio_pcm() for stream in sonic.streams)
    assert resent > 0 and second[:resent] == first[-resent:]
    sent = first + second[resent:]
    assert sent[: len(expected)] == expected


async def test_sonic_ending_the_stream_ends_the_call(autojump_clock: trio.abc.Clock) -> None:
    async def script(peer: TwilioPeer, sonic: FakeSonic) -> None:
        await peer.start()
        await send_frames(peer, ulaw_frames(10))
        sonic.streams[0].end()

    summary, _, _, _ = await run_scenario(script)
    assert summary.end == CallEnd("sonic_error", CloseCode.SONIC_SESSION_ENDED, "session ended")


async def test_final_transcripts_go_to_the_call_log_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Real clock: the call log writes from a worker thread, which the autojump clock cannot
    # see (python-trio/trio#456); it would jump to the hang-up before the lines are written.
    async def script(peer: TwilioPeer, sonic: FakeSonic) -> None:
        await peer.start()
        await send_frames(peer, ulaw_frames(5))
        stream = sonic.streams[0]
        for item in (
            text_start("u1", "USER", "FINAL"),
            text("u1", "USER", "My router is down."),
            text_start("s1", "ASSISTANT", "SPECULATIVE"),
            text("s1", "ASSISTANT", "Let me think"),
            text_start("a1", "ASSISTANT", "FINAL"),
            text("a1", "ASSISTANT", "Please restart it."),
        ):
            stream.feed(item)
        await trio.sleep(1)
        await peer.stop()

    log_path = tmp_path / "calls.jsonl"
    caplog.set_level("DEBUG")
    await run_scenario(script, call_log_path=log_path)
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [(line["role"], line["text"]) for line in lines] == [
        ("caller", "My router is down."),
        ("assistant", "Please restart it."),
    ]
    assert "router" not in caplog.text  # the service log never carries transcripts


async def test_a_carrier_that_stops_reading_cannot_grow_memory(
    autojump_clock: trio.abc.Clock,
) -> None:
    channels: list[CallChannel] = []
    answer = pcm_tone(8000)  # one second of assistant audio per chunk fed

    async def script(peer: TwilioPeer, sonic: FakeSonic) -> None:
        await peer.start()
        await send_frames(peer, ulaw_frames(5))
        stream = sonic.streams[0]
        stream.feed(audio_start("a1"))
        for _ in range(60):  # a minute of answer, generated at once, never read by the carrier
            stream.feed(audio("a1", answer))
        await trio.sleep(30)
        channel = channels[0]
        queue = channel._assistant
        # The assistant queue stops at its bound (2 s of audio, overshot by one Sonic event
        # at most) and Sonic is no longer read: most of the minute still waits in the Sonic
        # stream (HTTP/2 window backpressure).
        assert queue.statistics.high_water <= queue.capacity + 1.0
        assert stream._feed_receive.statistics().current_buffer_used > 40
        # The carrier catches up: everything flows again, then it hangs up.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.receive_all)
            await trio.sleep(80)
            await peer.stop()

    summary, peer, _, _ = await run_scenario(script, peer_reads=False, channels=channels)
    assert summary.end is not None and summary.end.reason == "hangup"
    assert len(peer.audio()) == 60 * 8000  # nothing was dropped, only delayed


async def test_expiring_credentials_rotate_ahead_but_never_in_a_tight_loop(
    autojump_clock: trio.abc.Clock,
) -> None:
    # Credentials that expire within the rotation margin and are never refreshed: every new
    # stream is "due" at once. The session still keeps each stream a minute.
    async def script(peer: TwilioPeer, sonic: FakeSonic) -> None:
        await peer.start()
        await trio.sleep(200)
        await peer.stop()

    # A silent call: the idle timeout is raised so that only rotation is exercised.
    summary, _, sonic, _ = await run_scenario(
        script,
        sonic=FakeSonic(credentials_lifetime=100),
        settings=CallSettings(idle_timeout=3600.0),
    )
    assert summary.end is not None and summary.end.reason == "hangup"
    assert 3 <= len(sonic.streams) <= 4  # about one per minute of the 200 s call


async def test_a_refused_stream_is_reported_by_its_http_answer(
    autojump_clock: trio.abc.Clock,
) -> None:
    # The set-up events go out before the HTTP answer; when the stream was refused the first
    # send fails as "closed", but the call must end for the reason Bedrock gave (429 here).
    async def script(peer: TwilioPeer, sonic: FakeSonic) -> None:
        await peer.start()
        await trio.sleep(1)

    refusal = SonicHTTPError(429, "ThrottlingException", "Too many requests")
    summary, _, _, _ = await run_scenario(script, sonic=FakeSonic(refuse_with=refusal))
    assert summary.end is not None
    assert (summary.end.reason, summary.end.code) == ("sonic_error", CloseCode.SONIC_THROTTLED)
