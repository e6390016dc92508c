"""The emulator over real TLS + HTTP/2 sockets, driven by a minimal test-only h2 client.

The client below is deliberately tiny (h2 + the sans-IO codec/signer/events/output), so these
tests do not depend on the product client. Real time is used (sockets cannot run on the
autojump clock); knob values are small and the assertions are about content and order,
never about how long something took.
"""

from __future__ import annotations

import time

import attrs
import pytest
import trio

from actors.errors import EventStreamError, SonicStreamError
from actors.sonic import events as ev
from actors.sonic.output import (
    AudioOutput,
    CompletionEnded,
    CompletionStarted,
    ContentEnded,
    ContentKind,
    ContentStarted,
    GenerationStage,
    TextOutput,
    UsageEvent,
)
from actors.sonic.signing import Credentials, EventSigner, request_path
from devkit.emulator import open_emulator
from devkit.emulator.conversation import ASSISTANT_PHRASES, USER_PHRASES
from devkit.emulator.raw_client import (
    CREDS,
    FAST,
    RATE_OUT,
    Ended,
    Reset,
    config,
    connect,
    silence,
    tone,
)


def events_only(items: list[object]) -> list[object]:
    return [i for i in items if not isinstance(i, str)]


async def test_full_session_transcript_audio_and_clean_close() -> None:
    async with open_emulator(config()) as emulator, connect(emulator) as conn:
        stream = await conn.open_stream()
        assert stream.status == 200
        assert stream.headers["content-type"] == "application/vnd.amazon.eventstream"
        await stream.start_session()
        await stream.send_audio(silence(0.2) + tone(0.5) + silence(0.3))
        items = events_only(
            await stream.until(lambda i: isinstance(i, CompletionEnded | Exception))
        )
        kinds = [type(i).__name__ for i in items if not isinstance(i, AudioOutput)]
        assert kinds == [
            "CompletionStarted",
            "ContentStarted", "TextOutput", "ContentEnded",  # USER transcript
            "UsageEvent",
            "ContentStarted", "TextOutput", "ContentEnded",  # ASSISTANT speculative
            "ContentStarted", "ContentEnded",  # AUDIO (chunks filtered out)
            "ContentStarted", "TextOutput", "ContentEnded",  # ASSISTANT final
            "UsageEvent",
            "CompletionEnded",
        ]  # fmt: skip
        starts = [i for i in items if isinstance(i, ContentStarted)]
        assert [(s.kind, s.role, s.generation_stage) for s in starts] == [
            (ContentKind.TEXT, "USER", GenerationStage.FINAL),
            (ContentKind.TEXT, "ASSISTANT", GenerationStage.SPECULATIVE),
            (ContentKind.AUDIO, "ASSISTANT", None),
            (ContentKind.TEXT, "ASSISTANT", GenerationStage.FINAL),
        ]
        assert starts[2].sample_rate == RATE_OUT
        texts = [i for i in items if isinstance(i, TextOutput)]
        assert texts[0].content in USER_PHRASES
        assert texts[1].content in ASSISTANT_PHRASES and texts[2].content == texts[1].content
        audio = b"".join(i.pcm for i in items if isinstance(i, AudioOutput))
        assert len(audio) == round(FAST.reply_seconds * RATE_OUT) * 2
        assert isinstance(items[0], CompletionStarted)
        assert {i.completion_id for i in items if hasattr(i, "completion_id")} == {
            items[0].completion_id
        }
        usage = [i for i in items if isinstance(i, UsageEvent)]
        assert usage[-1].total.output_speech > 0 and usage[0].delta.input_speech > 0
        ends = [i for i in items if isinstance(i, ContentEnded)]
        assert ends[-1].stop_reason == "END_TURN"
        assert items[-1] == CompletionEnded(
            session_id=items[0].session_id,
            prompt_name="p-1",
            completion_id=items[0].completion_id,
            stop_reason="END_TURN",
        )
        await stream.close_session()
        tail = await stream.until(lambda i: isinstance(i, Ended | Reset | Exception))
        assert tail[-1] == Ended()
        with trio.fail_after(5):
            await emulator.wait_idle()
        stats = emulator.statistics()
        assert stats.streams_opened == stats.streams_completed == 1
        assert stats.signature_failures == stats.validation_errors == 0
        assert stats.turns == 1 and stats.audio_bytes_out == len(audio)
        assert stats.audio_bytes_in == len(silence(0.2) + tone(0.5) + silence(0.3))


async def test_barge_in_during_assistant_audio() -> None:
    # A long reply generated at 2x real time: the caller talks over it.
    plan = attrs.evolve(FAST, reply_seconds=20.0, audio_speed=2.0)
    async with open_emulator(config(plan=plan)) as emulator, connect(emulator) as conn:
        stream = await conn.open_stream()
        await stream.start_session()
        await stream.send_audio(tone(0.4) + silence(0.3))
        await stream.until(lambda i: isinstance(i, AudioOutput))
        await stream.send_audio(tone(0.3))
        items = events_only(
            await stream.until(lambda i: isinstance(i, CompletionEnded | Exception))
        )
        tail = [i for i in items if not isinstance(i, AudioOutput)]
        assert [type(i).__name__ for i in tail] == [
            "ContentEnded", "ContentStarted", "TextOutput", "ContentEnded", "UsageEvent",
            "CompletionEnded",
        ]  # fmt: skip
        audio_end, final_start, signal, text_end = tail[0], tail[1], tail[2], tail[3]
        assert isinstance(audio_end, ContentEnded) and audio_end.kind == ContentKind.AUDIO
        assert (
            isinstance(final_start, ContentStarted)
            and final_start.generation_stage == GenerationStage.FINAL
        )
        assert isinstance(signal, TextOutput) and signal.is_barge_in
        assert signal.content == '{ "interrupted" : true }'
        assert isinstance(text_end, ContentEnded) and text_end.stop_reason == "INTERRUPTED"
        last = tail[-1]
        assert isinstance(last, CompletionEnded) and last.stop_reason == "INTERRUPTED"
        assert emulator.statistics().barge_ins == 1
        # After the interruption the caller's new utterance gets its own turn.
        await stream.send_audio(silence(0.3))
        nxt = events_only(await stream.until(lambda i: isinstance(i, ContentStarted | Exception)))
        assert isinstance(nxt[0], CompletionStarted)
        assert nxt[0].completion_id != last.completion_id


async def test_bad_request_signature_gets_403() -> None:
    async with open_emulator(config()) as emulator, connect(emulator) as conn:
        stream = await conn.open_stream(creds=Credentials(CREDS.access_key_id, "wrong-secret"))
        await stream.until(lambda i: isinstance(i, Ended))
        assert stream.status == 403
        assert stream.headers["x-amzn-errortype"].split(":")[0] == "InvalidSignatureException"
        assert b"signature we calculated does not match" in stream.body
        unknown = await conn.open_stream(creds=Credentials("AKIDUNKNOWN", "x"))
        assert unknown.status == 403
        assert unknown.headers["x-amzn-errortype"].startswith("UnrecognizedClientException")
        bad_model = await conn.open_stream(path=request_path("amazon.nova-9-sonic-v1:0"))
        assert bad_model.status == 400
        assert bad_model.headers["x-amzn-errortype"].startswith("ValidationException")
        # The connection still serves good streams afterwards.
        good = await conn.open_stream()
        assert good.status == 200
        stats = emulator.statistics()
        assert (stats.streams_refused, stats.streams_opened, stats.signature_failures) == (3, 1, 2)


async def test_bad_event_signature_gets_an_exception_frame_and_end() -> None:
    async with open_emulator(config()) as emulator, connect(emulator) as conn:
        stream = await conn.open_stream()
        await stream.send(ev.session_start())
        forged = EventSigner(
            credentials=Credentials(CREDS.access_key_id, "wrong"),
            region="us-east-1",
            seed_signature=stream.signer.prior_signature,
        )
        inner = ev.encode_input_chunk(
            ev.prompt_start(prompt_name="p", voice_id="matthew", output_sample_rate=8000)
        )
        await stream.send_raw(forged.sign(inner, int(time.time() * 1000)))
        items = await stream.until(lambda i: isinstance(i, Ended | Reset))
        errors = [i for i in items if isinstance(i, SonicStreamError)]
        assert len(errors) == 1 and errors[0].exception_type == "validationException"
        assert "signature" in errors[0].message
        assert isinstance(items[-1], Ended)
        assert emulator.statistics().signature_failures == 1


async def test_rule_violation_is_a_validation_exception() -> None:
    async with open_emulator(config()) as emulator, connect(emulator) as conn:
        stream = await conn.open_stream()
        await stream.send(ev.session_start())
        await stream.send(
            ev.audio_content_start(prompt_name="p", content_name="a", sample_rate=16000)
        )
        items = await stream.until(lambda i: isinstance(i, Ended | Reset))
        errors = [i for i in items if isinstance(i, SonicStreamError)]
        assert errors[0].exception_type == "validationException"
        assert "before promptStart" in errors[0].message
        assert emulator.statistics().validation_errors == 1


async def test_model_timeout_at_session_limit_leaves_neighbour_alone() -> None:
    # Stream 1 has a 2 s session limit (by directive); stream 2 on the same connection does not.
    async with open_emulator(config()) as emulator, connect(emulator) as conn:
        doomed = await conn.open_stream()
        healthy = await conn.open_stream()
        await doomed.start_session(system="Test. [emulator:session-limit=2]")
        await healthy.start_session()
        items = await doomed.until(
            lambda i: isinstance(i, Ended | Reset),
        )
        errors = [i for i in items if isinstance(i, SonicStreamError)]
        assert [e.exception_type for e in errors] == ["modelTimeoutException"]
        assert errors[0].retryable
        await healthy.send_audio(tone(0.3) + silence(0.3))
        turn = await healthy.until(lambda i: isinstance(i, CompletionEnded | Exception))
        assert isinstance(turn[-1], CompletionEnded)


async def test_faults_by_directive_rst_and_corrupt_frame() -> None:
    async with open_emulator(config()) as emulator, connect(emulator) as conn:
        rst = await conn.open_stream()
        corrupt = await conn.open_stream()
        await rst.start_session(system="[emulator:rst-after=0.3]")
        await corrupt.start_session(system="[emulator:corrupt-after=0.3]")
        rst_items = await rst.until(lambda i: isinstance(i, Ended | Reset))
        assert rst_items[-1] == Reset(2)  # INTERNAL_ERROR
        bad = await corrupt.until(lambda i: isinstance(i, EventStreamError))
        assert "crc" in str(bad[-1]).lower() or "checksum" in type(bad[-1]).__name__.lower()
        assert emulator.statistics().faults_injected == 2


async def test_throttling_at_open_every_second_stream() -> None:
    async with open_emulator(config(throttle_open_every=2)) as emulator, connect(emulator) as conn:
        first = await conn.open_stream()
        second = await conn.open_stream()
        assert first.status == 200
        assert second.status == 429
        assert second.headers["x-amzn-errortype"].startswith("ThrottlingException")
        assert emulator.statistics().faults_injected == 1


async def test_idle_timeout_and_stall() -> None:
    plan = attrs.evolve(FAST, idle_timeout=0.5)
    async with open_emulator(config(plan=plan)) as emulator, connect(emulator) as conn:
        idle = await conn.open_stream()
        stalled = await conn.open_stream()
        await idle.start_session()
        await stalled.start_session(system="[emulator:stall-after=0,idle-timeout=1000]")
        items = await idle.until(lambda i: isinstance(i, Ended | Reset))
        errors = [i for i in items if isinstance(i, SonicStreamError)]
        assert errors[0].exception_type == "validationException" and "531" in errors[0].message
        # The stalled stream answers nothing, even to a full turn, but stays open.
        await stalled.send_audio(tone(0.3) + silence(0.5))
        with trio.move_on_after(1.0):
            got = await stalled.next()
            pytest.fail(f"stalled stream sent {got!r}")
        assert emulator.statistics().streams_active == 1


@pytest.mark.parametrize("limit", [1])
async def test_graceful_goaway_after_n_streams(limit: int) -> None:
    async with (
        open_emulator(config(goaway_after_streams=limit)) as emulator,
        connect(emulator) as conn,
    ):
        stream = await conn.open_stream()
        await stream.start_session()
        await stream.send_audio(tone(0.3) + silence(0.3))
        # GOAWAY is sent once the first stream has finished; until then it keeps working.
        turn = await stream.until(lambda i: isinstance(i, CompletionEnded | Exception))
        assert isinstance(turn[-1], CompletionEnded)
        await stream.close_session()
        await stream.until(lambda i: isinstance(i, Ended))
        with trio.fail_after(5):
            await conn.goaway.wait()
        assert emulator.statistics().streams_completed == 1


async def test_windows_are_sized_for_many_busy_streams() -> None:
    cfg = config(receive_window=1 << 20, max_concurrent_streams=100)
    async with open_emulator(cfg) as emulator, connect(emulator) as conn:
        stream = await conn.open_stream()
        assert stream.status == 200  # the server's SETTINGS and WINDOW_UPDATE arrived by now
        assert conn.h2.remote_settings.initial_window_size == 1 << 20
        assert conn.h2.outbound_flow_control_window == (1 << 20) * 100
        assert conn.h2.local_flow_control_window(stream.stream_id) == 1 << 20
