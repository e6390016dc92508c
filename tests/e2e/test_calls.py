"""Whole calls over real sockets: simulated carriers → daemon → emulator, prompts from moto.

Each test places calls with the load harness's simulated carrier (``devkit.simcall``),
which plays Twilio or Asterisk exactly as the real platform does (20 ms frames in real time,
marks echoed at playback, clear/FLUSH_MEDIA honoured) and reports what it saw.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import attrs
import pytest
import trio
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

from actors.close_codes import CloseCode
from actors.sonic import output
from actors.sonic.session import SonicOpener, SonicStreamLike
from devkit.emulator import open_emulator
from devkit.emulator.server import Emulator
from devkit.local_s3 import LocalS3, S3RequestCounter
from devkit.simcall import CallerAuth, CallReport, CallScript, run_simulated_call
from sessions.logs import current_call
from sessions.serve import Daemon, open_daemon
from tests.e2e.conftest import (
    daemon_overrides,
    daemon_settings,
    emulator_config,
    seed_prompts,
)

REPLY_FRAMES = 50  # the emulator's replies last 1.0 s: 50 frames of 20 ms


def ended(daemon: Daemon, reason: str, carrier: str = "twilio") -> float:
    value = daemon.metrics.registry.get_sample_value(
        "novavoice_calls_ended_total", {"carrier": carrier, "reason": reason}
    )
    return value or 0.0


def drops_by_queue(daemon: Daemon) -> dict[str, float]:
    return {
        q: daemon.metrics.registry.get_sample_value("novavoice_queue_drops_total", {"queue": q})
        or 0.0
        for q in ("audio_in", "pre_stream", "audio_out", "rate_limited")
    }


def drops(daemon: Daemon) -> float:
    return sum(drops_by_queue(daemon).values())


async def test_twilio_call_turns_and_hangup(
    daemon: Daemon, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="novavoice.supervisor")
    script = CallScript(length=None, max_turns=2, utterance_seconds=(0.6, 0.6))
    with trio.fail_after(30):
        report = await run_simulated_call(daemon.url, assistant="esther", script=script)
        await daemon.supervisor.wait_active_calls(lambda n: n == 0)
        await emulator.wait_idle()
    assert report.outcome == "completed", report
    assert report.turns == 2 and report.responses == 2
    assert report.frames_received == 2 * REPLY_FRAMES  # every frame of both answers
    assert report.underruns == 0
    assert report.marks_received == 2 and report.marks_echoed == 2
    assert report.duplicate_marks == 0
    assert report.close_code == 1000 and report.closed_by == "caller"
    stats = emulator.statistics()
    assert stats.streams_completed == 1  # the stream was closed politely (sessionEnd...)
    assert ended(daemon, "hangup") == 1
    assert drops(daemon) == 0
    [end] = [r for r in caplog.records if getattr(r, "event", None) == "call_ended"]
    assert end.turns == 2  # type: ignore[attr-defined]  # was 0: counted completionEnd


async def test_asterisk_slin16_call(emulator: Emulator, local_s3: LocalS3) -> None:
    settings = daemon_settings(admission={"asterisk_bearer_token": "asterisk-bearer-token"})
    script = CallScript(length=None, max_turns=1, utterance_seconds=(0.6, 0.6))
    with trio.fail_after(30):
        async with open_daemon(settings, daemon_overrides(emulator, local_s3)) as daemon:
            report = await run_simulated_call(
                daemon.url,
                dialect="asterisk",
                assistant="support-agent",
                asterisk_format="slin16",
                script=script,
                auth=CallerAuth(bearer_token="asterisk-bearer-token"),
            )
            await daemon.supervisor.wait_active_calls(lambda n: n == 0)
            await emulator.wait_idle()
            assert report.outcome == "completed", report
            assert report.responses == 1
            assert report.assistant_audio_s >= 1.0  # the whole 1 s answer, 16 kHz end to end
            # The simulated Asterisk hangs up like webchan_hangup: CLOSE 1000.
            assert ended(daemon, "hangup", "asterisk") == 1
            assert drops(daemon) == 0
    assert emulator.statistics().streams_completed == 1


async def test_barge_in_clears_playback_and_cuts_the_answer(local_s3: LocalS3) -> None:
    # Answers of 4 s generated at 4x real time take 1 s to arrive: a barge-in 0.3 s into
    # playback lands while the daemon is still forwarding, so the rest must be dropped.
    script = CallScript(
        length=None,
        max_turns=2,
        utterance_seconds=(0.6, 0.6),
        barge_in_turn=0,
        barge_in_delay=0.3,
    )
    with trio.fail_after(40):
        async with (
            open_emulator(emulator_config(reply_seconds=4.0)) as emulator,
            open_daemon(daemon_settings(), daemon_overrides(emulator, local_s3)) as daemon,
        ):
            report = await run_simulated_call(daemon.url, assistant="esther", script=script)
            barge_ins = daemon.metrics.registry.get_sample_value(
                "novavoice_barge_ins_total", {"carrier": "twilio"}
            )
    assert report.outcome == "completed", report
    assert report.barge_ins == 1 and report.barge_ins_missed == 0
    assert report.clears_received == 1 and len(report.barge_in_reactions_s) == 1
    assert barge_ins == 1
    # The second answer arrived whole (200 frames); the interrupted one was cut short.
    assert 200 < report.frames_received < 400


def crash_for(assistant: str) -> Any:
    """Sonic middleware that crashes one assistant's audio-out pump at its first audio."""

    class CrashingStream:
        def __init__(self, inner: SonicStreamLike) -> None:
            self._inner = inner
            self.credentials_deadline = inner.credentials_deadline

        async def send(self, nova_event_json: bytes) -> None:
            await self._inner.send(nova_event_json)

        async def wait_response(self) -> None:
            await self._inner.wait_response()

        def __aiter__(self) -> AsyncIterator[output.OutputEvent]:
            return self._events()

        async def _events(self) -> AsyncIterator[output.OutputEvent]:
            async for event in self._inner:
                if isinstance(event, output.AudioOutput):
                    # Before any audio reaches the caller, so its report cannot mistake the
                    # crash for a short answer followed by its own hang-up.
                    raise RuntimeError("injected crash in the audio-out pump")
                yield event

    class Wrapper:
        def __init__(self, inner: SonicOpener) -> None:
            self._inner = inner

        def open_stream(
            self, *, wait_for_response: bool = True
        ) -> AbstractAsyncContextManager[SonicStreamLike]:
            ctx = current_call()
            if ctx is None or ctx.assistant != assistant:
                return self._inner.open_stream(wait_for_response=wait_for_response)
            return self._crashing(wait_for_response)

        @asynccontextmanager
        async def _crashing(self, wait_for_response: bool) -> AsyncIterator[SonicStreamLike]:
            async with self._inner.open_stream(wait_for_response=wait_for_response) as stream:
                yield CrashingStream(stream)

    return Wrapper


async def test_a_crashing_call_leaves_fifty_others_untouched(
    emulator: Emulator, local_s3: LocalS3
) -> None:
    overrides = attrs.evolve(
        daemon_overrides(emulator, local_s3), sonic_middleware=crash_for("support-agent")
    )
    # This test is about isolation, not delivery timing: on a loaded machine the crash's
    # first audio may come late (a generous reply timeout keeps the caller from hanging up
    # first), and 51 calls' audio may stall for longer than the caller's usual 0.3 s
    # end-of-answer gap (a 3 s gap keeps it listening until the whole answer has arrived).
    script = CallScript(
        length=None,
        max_turns=1,
        utterance_seconds=(0.6, 0.6),
        reply_timeout=45.0,
        reply_done_gap=3.0,
    )
    reports: list[CallReport] = []
    # 51 cold prompt loads at once against moto on a loaded 2-core machine can take longer
    # than the default 5 s budget; the budget is not what this test is about. Nor is the
    # caller-audio rate limit: these simulated callers share the daemon's event loop, so when
    # 51 call starts starve it for seconds, each caller's catch-up backlog arrives at once
    # and looks like a flood (tests/e2e/test_caller_audio_limits.py covers the limit).
    settings = daemon_settings(prompts={"load_timeout": 30.0}, calls={"caller_audio_rate": 0})
    with trio.fail_after(120):
        async with open_daemon(settings, overrides) as daemon:
            async with trio.open_nursery() as nursery:

                async def place(assistant: str, seed: int) -> None:
                    reports.append(
                        await run_simulated_call(
                            daemon.url, assistant=assistant, script=script, seed=seed
                        )
                    )

                nursery.start_soon(place, "support-agent", 999)
                for i in range(50):
                    nursery.start_soon(place, "esther", i)
            await daemon.supervisor.wait_active_calls(lambda n: n == 0)
            await emulator.wait_idle()
            crashed = [r for r in reports if r.assistant == "support-agent"]
            healthy = [r for r in reports if r.assistant == "esther"]
            assert len(crashed) == 1 and len(healthy) == 50
            assert crashed[0].close_code == CloseCode.INTERNAL_ERROR
            for r in healthy:
                assert r.outcome == "completed", r
                assert r.frames_received == REPLY_FRAMES, r  # every frame of the answer
                assert r.close_code == 1000
            assert ended(daemon, "internal_error") == 1
            assert ended(daemon, "hangup") == 50
            assert drops(daemon) == 0, drops_by_queue(daemon)


async def test_missing_prompt_refuses_only_that_call(emulator: Emulator, local_s3: LocalS3) -> None:
    script = CallScript(length=None, max_turns=1, utterance_seconds=(0.6, 0.6))
    results: dict[str, CallReport] = {}
    # A generous admission check, so a loaded test machine cannot turn the refusal into an
    # accepted call that fails later (that path: test_admission.py).
    settings = daemon_settings(admission={"prompt_check": 5.0})
    with trio.fail_after(30):
        async with (
            open_daemon(settings, daemon_overrides(emulator, local_s3)) as daemon,
            trio.open_nursery() as nursery,
        ):

            async def place(assistant: str) -> None:
                results[assistant] = await run_simulated_call(
                    daemon.url, assistant=assistant, script=script
                )

            nursery.start_soon(place, "nobody-here")
            nursery.start_soon(place, "esther")
    # The prompt lookup finished within ADMISSION_PROMPT_CHECK_MS: refused before answering.
    assert results["nobody-here"].outcome == "rejected"
    assert results["nobody-here"].http_status == 404
    assert "nobody-here" in (results["nobody-here"].error or "")
    assert results["esther"].outcome == "completed"
    assert results["esther"].frames_received == REPLY_FRAMES
    failures = daemon.metrics.prompt_load_failures
    assert failures.labels("not_found")._value.get() == 1
    assert failures.labels("unavailable")._value.get() == 0


async def test_hostile_assistant_name_is_refused_before_s3(daemon: Daemon) -> None:
    script = CallScript(length=2.0)
    with trio.fail_after(30):
        report = await run_simulated_call(
            daemon.url, path="/twilio/..%2F..%2Fsecrets", script=script
        )
    assert report.outcome == "rejected" and report.http_status == 404  # never reached S3


@asynccontextmanager
async def stoppable_s3() -> AsyncIterator[tuple[LocalS3, ThreadedMotoServer]]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        s3 = LocalS3(endpoint_url=f"http://{host}:{port}", requests=S3RequestCounter())
        seed_prompts(s3)
        yield s3, server
    finally:
        server.stop()


async def test_s3_outage_cached_assistants_still_answer(emulator: Emulator) -> None:
    script = CallScript(length=None, max_turns=1, utterance_seconds=(0.6, 0.6))
    settings = daemon_settings(prompts={"cache_ttl": 0.2, "load_timeout": 3.0})
    with trio.fail_after(60):
        async with (
            stoppable_s3() as (s3, server),
            open_daemon(settings, daemon_overrides(emulator, s3)) as daemon,
        ):
            if True:
                first = await run_simulated_call(daemon.url, assistant="esther", script=script)
                assert first.outcome == "completed"
                await trio.to_thread.run_sync(server.stop)  # S3 goes down
                await trio.sleep(0.3)  # the cached prompt is now past its TTL
                again, never_cached = (
                    await run_simulated_call(daemon.url, assistant="esther", script=script),
                    await run_simulated_call(daemon.url, assistant="support-agent", script=script),
                )
                stats = daemon.prompt_cache.statistics()
    assert again.outcome == "completed" and again.frames_received == REPLY_FRAMES
    assert stats.stale_served >= 1
    assert never_cached.close_code in (CloseCode.PROMPT_STORE_FAILED, CloseCode.PROMPT_TIMEOUT)


async def test_calls_outlive_the_stream_limit(local_s3: LocalS3) -> None:
    # Streams die after 3 s here (Bedrock: 8 minutes). One call rotates ahead of the limit
    # (rotate_after 1.5 s), the other only when the limit hits it: both keep talking.
    script = CallScript(length=None, max_turns=4, utterance_seconds=(0.6, 0.6))
    with trio.fail_after(60):
        async with open_emulator(emulator_config(session_limit=3.0)) as emulator:
            for rotate_after in (1.5, 100.0):
                settings = daemon_settings(calls={"rotate_after": rotate_after})
                overrides = daemon_overrides(emulator, local_s3)
                async with open_daemon(settings, overrides) as daemon:
                    report = await run_simulated_call(daemon.url, assistant="esther", script=script)
                    await daemon.supervisor.wait_active_calls(lambda n: n == 0)
                    opens = daemon.metrics.registry.get_sample_value(
                        "novavoice_sonic_stream_opens_total"
                    )
                assert report.outcome == "completed", (rotate_after, report)
                assert report.close_code == 1000
                # Rotating ahead of the limit loses nothing; a stream cut by the limit may
                # take the turn in flight with it (its audio went to the dying stream).
                assert report.responses == 4 if rotate_after < 3 else report.responses >= 3
                assert opens is not None and opens >= 2
            await emulator.wait_idle()
            stats = emulator.statistics()
    assert stats.signature_failures == 0 and stats.validation_errors == 0
