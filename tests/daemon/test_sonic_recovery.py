"""Recovery of a running call's Sonic session: classification, budget, back-off, stall watchdog.

The classification and the budget are plain functions and records; the session runs under
the autojump clock with the scripted :class:`FakeSonic`, so back-offs and stall deadlines
are exact.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
import trio

from actors.close_codes import CloseCode
from actors.errors import (
    ChecksumMismatch,
    InvalidMessageLength,
    LocalProtocolError,
    RemoteProtocolError,
    SonicConnectionError,
    SonicError,
    SonicHTTPError,
    SonicStalled,
    SonicStreamError,
    SonicStreamRefused,
    SonicStreamReset,
    SonicTimeout,
    SonicUnrecoverable,
)
from actors.exception_groups import unwrap_lone_exception
from actors.sonic.recovery import (
    RecoveryBudget,
    RecoveryPolicy,
    failure_reason,
    is_speech,
    is_transient,
)
from actors.sonic.session import SessionOutput, SonicSession
from tests.daemon.fakes import FakeSonic, FakeSonicStream, new_session
from tests.daemon.test_call_channel import pcm_tone, setup_texts, text, text_start

# --- classification ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (SonicStreamError("modelStreamErrorException", "m"), "model_stream_error"),
        (SonicStreamError("modelTimeoutException", "m"), "model_timeout"),
        (SonicStreamError("throttlingException", "m"), "throttling"),
        (SonicStreamError("internalServerException", "m"), "internal_error"),
        (SonicStreamError("serviceUnavailableException", "m"), "internal_error"),
        (
            SonicStreamError(
                "validationException",
                "InternalErrorCode=531::RST_STREAM closed stream. HTTP/2 error code: NO_ERROR",
            ),
            "stream_reset",
        ),
        (
            SonicStreamError("validationException", "System instability detected. Please retry"),
            "stream_reset",
        ),
        (ChecksumMismatch("message", 1, 2), "checksum"),
        (InvalidMessageLength("impossible length"), "checksum"),
        (SonicStreamReset("stream 1 reset by server (INTERNAL_ERROR)"), "stream_reset"),
        (SonicStreamRefused("stream 3 refused by GOAWAY"), "goaway"),
        (SonicConnectionError("bedrock closed the connection"), "connection_lost"),
        (SonicTimeout("no response"), "timeout"),
        (SonicStalled("no output"), "stall"),
        (SonicHTTPError(429, "ThrottlingException", "m"), "throttling"),
        (SonicHTTPError(429, "ModelNotReadyException", "m"), "throttling"),
        (SonicHTTPError(500, "InternalServerException", "m"), "internal_error"),
        (SonicHTTPError(503, "ServiceUnavailableException", "m"), "internal_error"),
        (SonicHTTPError(502, "HTTP502", "m"), "internal_error"),
    ],
)
def test_transient_failures_have_a_reason(error: SonicError, reason: str) -> None:
    assert failure_reason(error) == reason
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        SonicHTTPError(403, "AccessDeniedException", "no access"),
        SonicHTTPError(400, "ValidationException", "bad model"),
        SonicHTTPError(404, "ResourceNotFoundException", "no such model"),
        SonicStreamError("validationException", "Invalid input event"),
        SonicStreamError("accessDeniedException", "m"),
        LocalProtocolError("a send was interrupted after signing"),
        RemoteProtocolError("audioOutput.content is not base64"),
        SonicUnrecoverable(SonicStalled("x"), reason="stall", attempts=4),
        ValueError("a bug"),
    ],
)
def test_permanent_failures_are_never_transient(error: Exception) -> None:
    assert failure_reason(error) is None
    assert not is_transient(error)


def test_speech_check_tells_speech_from_silence() -> None:
    assert is_speech(pcm_tone(800))
    assert not is_speech(bytes(1600))
    assert not is_speech(b"")


# --- budget and back-off ---------------------------------------------------------------------


class _Highest(random.Random):
    """Full jitter at its worst: always the cap."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_backoff_doubles_up_to_its_cap_and_the_budget_runs_out() -> None:
    budget = RecoveryBudget(
        RecoveryPolicy(max_attempts=6, backoff=0.2, backoff_max=3.0), rng=_Highest()
    )
    delays: list[float] = []
    while not budget.exhausted:
        delays.append(budget.next_delay(len(delays)))
    assert delays == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.0, 3.0])
    assert budget.attempts == 6
    assert budget.next_delay(0) == pytest.approx(0.2)  # a new failure starts low again


def test_backoff_is_full_jitter_between_zero_and_the_cap() -> None:
    draws = []
    for seed in range(200):
        budget = RecoveryBudget(
            RecoveryPolicy(max_attempts=3, backoff=1.0, backoff_max=10.0), rng=random.Random(seed)
        )
        draws.append([budget.next_delay(n) for n in range(3)])
    for cap, column in zip((1.0, 2.0, 4.0), zip(*draws, strict=True), strict=True):
        assert all(0.0 <= d <= cap for d in column)
        # Spread over the whole range, not a fixed delay with a little noise.
        assert min(column) < cap * 0.1 and max(column) > cap * 0.9


# --- the session ----------------------------------------------------------------------------


@attrs.define(eq=False)
class ScriptedSonic(FakeSonic):
    """A :class:`FakeSonic` whose next opens are refused with the given errors, in turn."""

    refusals: list[Exception | None] = attrs.field(factory=list)
    fail_every_stream_with: Exception | None = None
    """Fed to every stream as soon as it opens (a fault that follows the call)."""

    @asynccontextmanager
    async def open_stream(
        self, *, wait_for_response: bool = True
    ) -> AsyncIterator[FakeSonicStream]:
        self.refuse_with = self.refusals.pop(0) if self.refusals else None
        async with FakeSonic.open_stream(self, wait_for_response=wait_for_response) as stream:
            if self.fail_every_stream_with is not None:
                stream.feed(self.fail_every_stream_with)
            yield stream


@asynccontextmanager
async def running_session(
    sonic: FakeSonic, policy: RecoveryPolicy
) -> AsyncIterator[tuple[SonicSession, list[tuple[str, str]]]]:
    """A session (output drained) and the ``(reason, outcome)`` pairs it reported."""
    send, receive = trio.open_memory_channel[tuple[SessionOutput, float]](0)
    reports: list[tuple[str, str]] = []
    session = new_session(
        sonic,
        output_channel=send,
        rotate_after=300.0,
        recovery=policy,
        on_recovery=lambda reason, outcome: reports.append((reason, outcome)),
    )
    session.recovery.rng = _Highest()

    async def drain() -> None:
        async for _ in receive:
            pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        await nursery.start(session.run)
        yield session, reports
        nursery.cancel_scope.cancel()


async def run_until_it_fails(sonic: FakeSonic, policy: RecoveryPolicy, script: Any) -> SonicError:
    """Run a session under ``script`` and return the error it ended with."""
    with pytest.raises(SonicError) as info, unwrap_lone_exception(SonicError):
        async with running_session(sonic, policy) as (session, _):
            await script(session)
            await trio.sleep(1000)
    return info.value


POLICY = RecoveryPolicy(max_attempts=3, backoff=1.0, backoff_max=4.0, stall_timeout=5.0)
SPEECH = pcm_tone(256)  # 32 ms at 8 kHz, well above the speech threshold
SILENCE = bytes(512)


async def talk(session: SonicSession, seconds: float, chunk: bytes = SPEECH) -> None:
    """Send ``chunk`` every 32 ms for ``seconds``, as the audio-in pump does."""
    for _ in range(round(seconds / 0.032)):
        await session.send_audio(chunk)
        await trio.sleep(0.032)


async def test_a_transient_failure_continues_on_a_new_stream_with_the_history(
    autojump_clock: trio.abc.Clock,
) -> None:
    sonic = FakeSonic()
    async with running_session(sonic, POLICY) as (session, reports):
        first = sonic.streams[0]
        first.feed(text_start("u1", "USER", "FINAL"))
        first.feed(text("u1", "USER", "I need an appointment."))
        await trio.sleep(1)
        failed_at = trio.current_time()
        first.feed(SonicStreamError("modelStreamErrorException", "model stream failed"))
        await trio.sleep(10)
        assert len(sonic.streams) == 2
        # The first back-off is at most POLICY.backoff (here exactly: the worst draw).
        assert sonic.open_times[1] - failed_at == pytest.approx(1.0)
        assert setup_texts(sonic.streams[1]) == [
            ("SYSTEM", "You are Esther."),
            ("USER", "I need an appointment."),
        ]
        assert first.closed
        assert reports == [("model_stream_error", "recovered")]
        assert session.statistics.recoveries == 1
        assert session.statistics.recovery_failures == {"model_stream_error": 1}


@pytest.mark.parametrize(
    "error",
    [
        SonicStreamReset("stream 1 reset by server (INTERNAL_ERROR)"),
        SonicConnectionError("bedrock closed the connection"),
        SonicStreamError("throttlingException", "slow down"),
        SonicStreamError("internalServerException", "oops"),
        ChecksumMismatch("message", 1, 2),
    ],
)
async def test_each_transient_failure_kind_recovers(
    autojump_clock: trio.abc.Clock, error: Exception
) -> None:
    sonic = FakeSonic()
    async with running_session(sonic, POLICY) as (session, reports):
        sonic.streams[0].feed(error)
        await trio.sleep(10)
        assert len(sonic.streams) == 2
        assert reports == [(failure_reason(error), "recovered")]
        await session.send_audio(SILENCE)  # the new stream takes audio
        assert sonic.streams[1].names()[-1] == "audioInput"


async def test_a_permanent_error_is_not_retried(autojump_clock: trio.abc.Clock) -> None:
    sonic = FakeSonic()

    async def script(session: SonicSession) -> None:
        sonic.streams[0].feed(SonicStreamError("validationException", "Invalid input event"))

    error = await run_until_it_fails(sonic, POLICY, script)
    assert isinstance(error, SonicStreamError)
    assert error.exception_type == "validationException"
    assert len(sonic.streams) == 1


async def test_a_permanent_refusal_of_the_replacement_is_not_retried(
    autojump_clock: trio.abc.Clock,
) -> None:
    denied = SonicHTTPError(403, "AccessDeniedException", "no access")
    sonic = ScriptedSonic(refusals=[None, denied])

    async def script(session: SonicSession) -> None:
        sonic.streams[0].feed(SonicStreamError("internalServerException", "oops"))

    error = await run_until_it_fails(sonic, POLICY, script)
    assert error is denied
    assert len(sonic.streams) == 2


async def test_a_throttled_replacement_takes_another_attempt(
    autojump_clock: trio.abc.Clock,
) -> None:
    throttled = SonicHTTPError(429, "ThrottlingException", "slow down")
    sonic = ScriptedSonic(refusals=[None, throttled])
    async with running_session(sonic, POLICY) as (session, reports):
        failed_at = trio.current_time()
        sonic.streams[0].feed(SonicStreamReset("stream 1 reset by server (INTERNAL_ERROR)"))
        await trio.sleep(20)
        assert len(sonic.streams) == 3
        # Back-offs of 1 s, then 2 s (doubled): the worst draws of full jitter.
        opened = [t - failed_at for t in sonic.open_times[1:]]
        assert opened == pytest.approx([1.0, 3.0])
        assert reports == [("stream_reset", "failed_attempt"), ("throttling", "recovered")]
        assert session.recovery.attempts == 2


async def test_a_spent_budget_raises_unrecoverable_with_the_last_close_code(
    autojump_clock: trio.abc.Clock,
) -> None:
    # The first stream and each of the 3 replacements fail.
    sonic = ScriptedSonic(fail_every_stream_with=SonicStreamError("throttlingException", "slow"))

    async def script(session: SonicSession) -> None:
        await trio.lowlevel.checkpoint()

    error = await run_until_it_fails(sonic, POLICY, script)
    assert isinstance(error, SonicUnrecoverable)
    assert error.attempts == 3 and error.reason == "throttling"
    assert error.close_code == CloseCode.SONIC_THROTTLED
    assert isinstance(error.__cause__, SonicStreamError)
    assert len(sonic.streams) == 4
    assert all(stream.closed for stream in sonic.streams)


async def test_no_budget_means_no_recovery(autojump_clock: trio.abc.Clock) -> None:
    sonic = FakeSonic()

    async def script(session: SonicSession) -> None:
        sonic.streams[0].feed(SonicStreamError("internalServerException", "oops"))

    error = await run_until_it_fails(sonic, RecoveryPolicy(max_attempts=0), script)
    assert isinstance(error, SonicUnrecoverable)
    assert error.close_code == CloseCode.SONIC_FAILED
    assert len(sonic.streams) == 1


async def test_audio_after_a_failure_waits_for_the_new_stream(
    autojump_clock: trio.abc.Clock,
) -> None:
    sonic = FakeSonic()
    async with running_session(sonic, POLICY) as (session, _):
        first = sonic.streams[0]
        first.feed(SonicStreamReset("stream 1 reset by server (INTERNAL_ERROR)"))
        await trio.sleep(0.01)
        before = len(first.audio_pcm())
        marker = b"\x01\x00" * 256  # quiet: not speech, so nothing else is re-sent
        await session.send_audio(marker)  # blocks until the replacement is ready
        assert len(sonic.streams) == 2
        assert len(first.audio_pcm()) == before  # nothing went to the failed stream
        assert sonic.streams[1].audio_pcm() == marker


async def test_unanswered_speech_is_resent_on_the_new_stream(
    autojump_clock: trio.abc.Clock,
) -> None:
    sonic = FakeSonic()
    async with running_session(sonic, POLICY) as (session, _):
        first = sonic.streams[0]
        await talk(session, 1.0, SILENCE)
        first.feed(text_start("a1", "ASSISTANT", "FINAL"))  # output: all answered so far
        await trio.sleep(0.01)
        await talk(session, 1.0, SILENCE)
        question = b"".join(
            (i.to_bytes(2, "little") * 256) for i in range(3000, 3000 + 40)
        )  # 40 distinct loud chunks
        for n in range(40):
            await session.send_audio(question[n * 512 : (n + 1) * 512])
            await trio.sleep(0.032)
        first.feed(SonicConnectionError("bedrock closed the connection"))
        await trio.sleep(10)
        resent = sonic.streams[1].audio_pcm()
        # The question (and at most SPEECH_PREROLL of the silence before it), not the
        # silence that the model had already answered.
        assert resent.endswith(question)
        assert len(resent) - len(question) <= 0.3 * 16000 + 512
        assert session.statistics.resent_speech_chunks >= 40


async def test_a_stall_after_caller_speech_is_recovered(autojump_clock: trio.abc.Clock) -> None:
    sonic = FakeSonic()
    async with running_session(sonic, POLICY) as (session, reports):
        await talk(session, 1.0)
        spoke_until = trio.current_time()
        await talk(session, 15.0, SILENCE)  # the model never answers
        assert reports[0] == ("stall", "recovered")
        # Stalled POLICY.stall_timeout after the last speech, replaced after the back-off.
        assert sonic.open_times[1] - spoke_until == pytest.approx(5.0 + 1.0, abs=0.2)
        # The unanswered speech was heard by the new stream.
        assert SPEECH * 20 in sonic.streams[1].audio_pcm()
        # The new stream got the re-sent speech and no answer either: it is replaced too,
        # a whole stall timeout after it opened, after a back-off that starts low again
        # (a new failure, not another attempt at the first).
        assert reports[1] == ("stall", "recovered")
        assert sonic.open_times[2] - sonic.open_times[1] == pytest.approx(5.0 + 1.0, abs=0.2)


async def test_answered_speech_and_silence_never_stall(autojump_clock: trio.abc.Clock) -> None:
    sonic = FakeSonic()
    async with running_session(sonic, POLICY) as (session, reports):
        for turn in range(5):
            await talk(session, 2.0)
            await talk(session, 2.0, SILENCE)
            sonic.streams[0].feed(text_start(f"u{turn}", "USER", "FINAL"))
            await trio.sleep(0.01)
        await talk(session, 60.0, SILENCE)  # a long silence: nothing to answer
    assert reports == []
    assert len(sonic.streams) == 1


async def test_a_stall_watchdog_of_zero_is_off(autojump_clock: trio.abc.Clock) -> None:
    sonic = FakeSonic()
    policy = attrs.evolve(POLICY, stall_timeout=0.0)
    async with running_session(sonic, policy) as (session, reports):
        await talk(session, 1.0)
        await talk(session, 60.0, SILENCE)
    assert reports == []
    assert len(sonic.streams) == 1


async def test_a_failure_during_a_proactive_rotation_does_not_replace_the_new_stream(
    autojump_clock: trio.abc.Clock,
) -> None:
    sonic = FakeSonic(open_delay=1.0)
    send, receive = trio.open_memory_channel[tuple[SessionOutput, float]](100)
    session = new_session(
        sonic,
        output_channel=send,
        rotate_after=60.0,
        recovery=POLICY,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(session.run)
        # Rotation is due at 60 s after the first stream opened; the new one takes 1 s.
        await trio.sleep_until(sonic.open_times[0] + 60.5)
        sonic.streams[0].feed(SonicStreamError("internalServerException", "oops"))
        await trio.sleep(30)
        assert len(sonic.streams) == 2  # the rotation's stream, not another one
        assert session.statistics.proactive_rotations == 1
        assert session.statistics.recoveries == 0
        await session.send_audio(SILENCE)
        assert sonic.streams[1].names()[-1] == "audioInput"
        nursery.cancel_scope.cancel()
    receive.close()


async def test_a_first_stream_refused_by_goaway_is_opened_again(
    autojump_clock: trio.abc.Clock,
) -> None:
    sonic = ScriptedSonic(refusals=[SonicStreamRefused("stream 1 refused by GOAWAY")])
    async with running_session(sonic, POLICY) as (session, reports):
        assert len(sonic.streams) == 2
        assert reports == [("goaway", "recovered")]
        await session.send_audio(SILENCE)
        assert sonic.streams[1].names()[-1] == "audioInput"


async def test_a_first_stream_refused_by_bedrock_is_not_opened_again(
    autojump_clock: trio.abc.Clock,
) -> None:
    # 429 at open: the call ends at once with throttling (the caller has not spoken yet).
    throttled = SonicHTTPError(429, "ThrottlingException", "slow down")
    sonic = ScriptedSonic(refusals=[throttled])
    with pytest.raises(SonicHTTPError), unwrap_lone_exception(SonicError):
        async with running_session(sonic, POLICY):
            pass
    assert len(sonic.streams) == 1
