"""The product client against the emulator over real TLS + HTTP/2 sockets.

Real time (sockets cannot run on the autojump clock); knobs are small and assertions are
about content, types and order, never about how long something took. Deadlines only turn a
hang into a failure.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import numpy as np
import pytest
import trio

from actors.errors import (
    EventStreamError,
    SonicConnectionError,
    SonicError,
    SonicHTTPError,
    SonicStreamError,
)
from actors.sonic import events as ev
from actors.sonic import output
from actors.sonic.credentials import StaticCredentialsProvider
from actors.sonic.pool import open_sonic_client
from actors.sonic.signing import Credentials
from actors.sonic.stream import SonicClient, SonicStream
from devkit.emulator import Emulator, EmulatorConfig, StreamPlan, open_emulator

CREDS = Credentials("AKIDCLIENTE2E", "client-e2e-secret")
RATE_IN = 16000
RATE_OUT = 8000
CHUNK = 512 * 2  # 32 ms at 16 kHz
PROMPT = "p-1"
FAST = StreamPlan(time_to_first_audio=0.05, reply_seconds=0.6, audio_speed=20.0)


def config(**changes: Any) -> EmulatorConfig:
    base = EmulatorConfig(
        credentials={CREDS.access_key_id: CREDS.secret_access_key},
        plan=FAST,
        pause_scale=0.1,
        min_speech_seconds=0.05,
    )
    return attrs.evolve(base, **changes)


def tone(seconds: float) -> bytes:
    t = np.arange(round(seconds * RATE_IN)) / RATE_IN
    return (0.3 * 32767 * np.sin(2 * np.pi * 200 * t)).astype("<i2").tobytes()


def silence(seconds: float) -> bytes:
    return bytes(2 * round(seconds * RATE_IN))


@asynccontextmanager
async def client_for(
    emulator: Emulator, creds: Credentials = CREDS, **kwargs: Any
) -> AsyncIterator[SonicClient]:
    async with open_sonic_client(
        region="us-east-1",
        endpoint_url=emulator.url,
        ca_file=emulator.ca_file,
        credentials_provider=StaticCredentialsProvider(creds),
        **kwargs,
    ) as client:
        yield client


async def start_session(stream: SonicStream, system: str = "You are a test assistant.") -> None:
    await stream.send(ev.session_start(endpointing_sensitivity="MEDIUM"))
    await stream.send(
        ev.prompt_start(prompt_name=PROMPT, voice_id="tiffany", output_sample_rate=RATE_OUT)
    )
    await stream.send(
        ev.text_content_start(
            prompt_name=PROMPT, content_name="sys", role="SYSTEM", interactive=False
        )
    )
    await stream.send(ev.text_input(prompt_name=PROMPT, content_name="sys", content=system))
    await stream.send(ev.content_end(prompt_name=PROMPT, content_name="sys"))
    await stream.send(
        ev.audio_content_start(prompt_name=PROMPT, content_name="mic", sample_rate=RATE_IN)
    )


async def send_audio(stream: SonicStream, pcm: bytes) -> None:
    for i in range(0, len(pcm), CHUNK):
        await stream.send(
            ev.audio_input(prompt_name=PROMPT, content_name="mic", pcm=pcm[i : i + CHUNK])
        )


async def read_until(
    stream: SonicStream, stop: Callable[[output.OutputEvent], bool]
) -> list[output.OutputEvent]:
    seen = []
    async for event in stream:
        seen.append(event)
        if stop(event):
            break
    return seen


def ended_turn(event: output.OutputEvent) -> bool:
    return isinstance(event, output.CompletionEnded)


async def one_turn(stream: SonicStream) -> list[output.OutputEvent]:
    await send_audio(stream, tone(0.4) + silence(0.3))
    return await read_until(stream, ended_turn)


async def test_full_session_with_turns_and_barge_in() -> None:
    plan = attrs.evolve(FAST, reply_seconds=20.0, audio_speed=2.0)
    with trio.fail_after(60):
        async with (
            open_emulator(config()) as emulator,
            client_for(emulator) as client,
            client.open_stream() as stream,
        ):
            await start_session(stream)
            first = await one_turn(stream)
            texts = [e for e in first if isinstance(e, output.TextOutput)]
            assert [t.role for t in texts] == ["USER", "ASSISTANT", "ASSISTANT"]
            audio = b"".join(e.pcm for e in first if isinstance(e, output.AudioOutput))
            assert len(audio) == round(FAST.reply_seconds * RATE_OUT) * 2
            assert isinstance(first[-1], output.CompletionEnded)
            assert first[-1].stop_reason == "END_TURN"
            # a second turn on the same stream
            second = await one_turn(stream)
            assert isinstance(second[0], output.CompletionStarted)
            assert second[0].completion_id != first[0].completion_id  # type: ignore[union-attr]
        # the stream closed politely: the emulator counts it completed, not failed
        with trio.fail_after(5):
            await emulator.wait_idle()
        stats = emulator.statistics()
        assert stats.streams_completed == 1 and stats.validation_errors == 0

    with trio.fail_after(60):
        async with (
            open_emulator(config(plan=plan)) as emulator,
            client_for(emulator) as client,
            client.open_stream() as stream,
        ):
            await start_session(stream)
            await send_audio(stream, tone(0.4) + silence(0.3))
            await read_until(stream, lambda e: isinstance(e, output.AudioOutput))
            await send_audio(stream, tone(0.3))  # the caller talks over the reply
            tail = await read_until(stream, ended_turn)
            signals = [e for e in tail if isinstance(e, output.TextOutput) and e.is_barge_in]
            assert len(signals) == 1
            interrupted = [
                e for e in tail if isinstance(e, output.ContentEnded) and e.kind == "TEXT"
            ]
            assert interrupted[-1].stop_reason == "INTERRUPTED"
            assert emulator.statistics().barge_ins == 1


async def test_200_concurrent_streams_over_a_small_pool() -> None:
    done: list[int] = []
    with trio.fail_after(120):
        async with (
            open_emulator(config()) as emulator,
            client_for(emulator, max_connections=2, max_streams_per_connection=100) as client,
        ):

            async def call(n: int) -> None:
                async with client.open_stream() as stream:
                    await start_session(stream)
                    turn = await one_turn(stream)
                    assert isinstance(turn[-1], output.CompletionEnded)
                    done.append(n)

            async with trio.open_nursery() as nursery:
                for n in range(200):
                    nursery.start_soon(call, n)
            assert client.pool.statistics()["connections_opened"] == 2
        stats = emulator.statistics()
    assert sorted(done) == list(range(200))
    assert stats.streams_opened == 200 and stats.signature_failures == 0


async def test_bad_credentials_and_throttling_at_open() -> None:
    with trio.fail_after(30):
        async with open_emulator(config(throttle_open_ordinals=frozenset({2}))) as emulator:
            async with client_for(emulator, creds=Credentials(CREDS.access_key_id, "wrong")) as c:
                with pytest.raises(SonicHTTPError) as denied:
                    async with c.open_stream():
                        raise AssertionError("must not be reached")
            assert denied.value.status == 403 and not denied.value.retryable
            assert denied.value.error_type == "InvalidSignatureException"
            async with client_for(emulator) as client:
                with pytest.raises(SonicHTTPError) as throttled:
                    async with client.open_stream():
                        raise AssertionError("must not be reached")
                assert (throttled.value.status, throttled.value.error_type) == (
                    429,
                    "ThrottlingException",
                )
                assert throttled.value.retryable
                async with client.open_stream() as stream:  # the next one is fine
                    await start_session(stream)
                    assert isinstance((await one_turn(stream))[-1], output.CompletionEnded)


FAULTS: list[tuple[str, type[SonicError], str | None]] = [
    ("throttle-after=0.3", SonicStreamError, "throttlingException"),
    ("session-limit=0.5", SonicStreamError, "modelTimeoutException"),
    ("error-after=0.3", SonicStreamError, "modelStreamErrorException"),
    ("rst-after=0.3", SonicConnectionError, None),
    ("corrupt-after=0.3", EventStreamError, None),
    ("goaway-after=0.3", SonicConnectionError, None),
]


async def test_every_fault_is_typed_and_neighbours_are_untouched() -> None:
    outcomes: dict[str, BaseException] = {}
    neighbour_turns: list[output.OutputEvent] = []
    # One stream per connection, so the abrupt GOAWAY only hits its own stream's connection.
    with trio.fail_after(60):
        async with (
            open_emulator(config()) as emulator,
            client_for(emulator, max_connections=10, max_streams_per_connection=1) as client,
        ):

            async def faulty(directive: str) -> None:
                async with client.open_stream() as stream:
                    await start_session(stream, system=f"Test. [emulator:{directive}]")
                    try:
                        async for _ in stream:
                            pass
                    except SonicError as exc:
                        outcomes[directive] = exc

            async def neighbour(task_status: trio.TaskStatus[None]) -> None:
                async with client.open_stream() as stream:
                    await start_session(stream)
                    task_status.started()
                    await trio.sleep(1.0)  # every fault has fired by now
                    neighbour_turns.extend(await one_turn(stream))

            async with trio.open_nursery() as nursery:
                await nursery.start(neighbour)
                for directive, _, _ in FAULTS:
                    nursery.start_soon(faulty, directive)
    for directive, error_type, exception_type in FAULTS:
        error = outcomes[directive]
        assert type(error) is error_type or isinstance(error, error_type), directive
        if exception_type is not None:
            assert isinstance(error, SonicStreamError)
            assert error.exception_type == exception_type
    assert outcomes["throttle-after=0.3"].retryable  # type: ignore[attr-defined]
    assert outcomes["rst-after=0.3"].retryable  # type: ignore[attr-defined]
    assert isinstance(neighbour_turns[-1], output.CompletionEnded)


async def test_graceful_goaway_moves_new_streams_to_a_new_connection() -> None:
    with trio.fail_after(60):
        async with (
            open_emulator(config(goaway_after_streams=1)) as emulator,
            client_for(emulator) as client,
        ):
            for _ in range(3):
                async with client.open_stream() as stream:
                    await start_session(stream)
                    assert isinstance((await one_turn(stream))[-1], output.CompletionEnded)
            assert client.pool.statistics()["connections_opened"] == 3
            assert emulator.statistics().streams_completed == 3
