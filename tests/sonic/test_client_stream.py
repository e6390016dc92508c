"""SonicClient / SonicStream / pool against the in-memory fake server (autojump clock):
signed requests and event chains, HTTP error mapping, exception frames, polite close on
cancellation, the pool's connection policy, and errors that come out unwrapped."""

from __future__ import annotations

import contextvars
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing

from actors.errors import (
    EventStreamError,
    LocalProtocolError,
    SonicConnectionError,
    SonicHTTPError,
    SonicStreamError,
    SonicTimeout,
)
from actors.sonic import events, output
from actors.sonic.credentials import StaticCredentialsProvider
from actors.sonic.eventstream import Message, decode_message
from actors.sonic.pool import ConnectionPool, open_sonic_client
from actors.sonic.signing import Credentials, verify_outer_message
from actors.sonic.stream import SonicClient, http_error
from tests.sonic.test_client_fakeserver import FakeServer, ServerStream, fake_server

EXPIRY = datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)
CREDS = Credentials("AKIDTEST", "s3cr3t", session_token="tok", expiry=EXPIRY)


@asynccontextmanager
async def client_for(server: FakeServer, **kwargs: Any) -> AsyncIterator[SonicClient]:
    options: dict[str, Any] = {
        "region": "us-east-1",
        "endpoint_url": "https://bedrock.test:8443",
        "credentials_provider": StaticCredentialsProvider(CREDS),
        "opener": server.opener,
        "keepalive_interval": None,
    }
    options.update(kwargs)
    with trio.fail_after(600):  # a deadlock fails instead of hanging the autojump clock
        async with open_sonic_client(**options) as client:
            yield client


def verified_inner(st: ServerStream, messages: list[Message]) -> list[bytes]:
    """Check the whole signature chain; return the inner messages (b"" = end frame)."""
    prior = st.headers["authorization"].rsplit("Signature=", 1)[1]
    inners = []
    for message in messages:
        checked = verify_outer_message(
            credentials=CREDS, region="us-east-1", prior_signature=prior, outer=message
        )
        prior = checked.signature
        inners.append(checked.inner)
    return inners


def event_names(inners: list[bytes]) -> list[str]:
    names = []
    for inner in inners:
        if not inner:
            names.append("<end frame>")
            continue
        body = json.loads(events.chunk_event_json(decode_message(inner)))
        names.append(next(iter(body["event"])))
    return names


def chunk(name: str, **body: object) -> bytes:
    return events.encode_output_chunk(json.dumps({"event": {name: body}}).encode())


async def test_request_is_signed_and_events_chain(autojump_clock: trio.abc.Clock) -> None:
    seen: dict[str, Any] = {}

    async def handler(st: ServerStream) -> None:
        await st.respond()
        messages = await st.receive_messages()
        seen["headers"] = st.headers
        seen["names"] = event_names(verified_inner(st, messages))
        await st.send(chunk("completionStart", sessionId="s", promptName="p"))
        await st.send(chunk("textOutput", role="USER", content="hello", contentId="c"), end=True)

    async with (
        fake_server(handler) as server,
        client_for(server) as client,
        client.open_stream() as stream,
    ):
        assert stream.credentials_expiry == EXPIRY
        # Converted once to trio's clock, where the session's rotation waits for it.
        left = (EXPIRY - datetime.now(UTC)).total_seconds()
        assert stream.credentials_deadline == pytest.approx(trio.current_time() + left, abs=60)
        await stream.send(events.session_start())
        await stream.send(
            events.prompt_start(prompt_name="p", voice_id="matthew", output_sample_rate=8000)
        )
        await stream.end_input()
        received = [event async for event in stream]
    headers = seen["headers"]
    assert headers[":authority"] == "bedrock.test:8443"
    assert headers[":path"] == "/model/amazon.nova-2-sonic-v1%3A0/invoke-with-bidirectional-stream"
    assert headers["x-amz-security-token"] == "tok"
    assert headers["x-amz-content-sha256"] == "STREAMING-AWS4-HMAC-SHA256-EVENTS"
    # end_input closed the prompt and session it saw opened, then the signed end frame
    assert seen["names"] == [
        "sessionStart",
        "promptStart",
        "promptEnd",
        "sessionEnd",
        "<end frame>",
    ]
    assert isinstance(received[0], output.CompletionStarted)
    assert isinstance(received[1], output.TextOutput) and received[1].content == "hello"


async def test_cancellation_closes_politely_under_shield(autojump_clock: trio.abc.Clock) -> None:
    seen: dict[str, Any] = {}

    async def handler(st: ServerStream) -> None:
        await st.respond()
        messages = await st.receive_messages()  # until END_STREAM
        seen["names"] = event_names(verified_inner(st, messages))
        seen["ended"] = st.ended.is_set()
        await st.end()

    async with fake_server(handler) as server, client_for(server) as client:
        with trio.move_on_after(5) as scope:
            async with client.open_stream() as stream:
                await stream.send(events.session_start())
                await stream.send(
                    events.prompt_start(
                        prompt_name="p", voice_id="tiffany", output_sample_rate=8000
                    )
                )
                await stream.send(
                    events.audio_content_start(prompt_name="p", content_name="a", sample_rate=8000)
                )
                await stream.send(
                    events.audio_input(prompt_name="p", content_name="a", pcm=b"\x00\x01" * 160)
                )
                await trio.sleep_forever()  # the call is hung up: cancelled here
        assert scope.cancelled_caught
        await trio.testing.wait_all_tasks_blocked()
    assert seen["names"] == [
        "sessionStart",
        "promptStart",
        "contentStart",
        "audioInput",
        "contentEnd",
        "promptEnd",
        "sessionEnd",
        "<end frame>",
    ]
    assert seen["ended"]


@pytest.mark.parametrize(
    ("status", "errortype", "body", "error_type", "retryable"),
    [
        (
            403,
            "AccessDeniedException:http://internal.amazon.com/coral/com.amazon.coral.service/",
            b'{"message":"The security token included in the request is invalid."}',
            "AccessDeniedException",
            False,
        ),
        (
            429,
            "ThrottlingException",
            b'{"message":"Too many requests"}',
            "ThrottlingException",
            True,
        ),
        (503, None, b"", "ServiceUnavailableException", True),
    ],
)
async def test_http_errors_are_typed(
    autojump_clock: trio.abc.Clock,
    status: int,
    errortype: str | None,
    body: bytes,
    error_type: str,
    retryable: bool,
) -> None:
    async def handler(st: ServerStream) -> None:
        headers = (("x-amzn-errortype", errortype),) if errortype else ()
        await st.respond(status, headers)
        await st.send(body, end=True)

    async with fake_server(handler) as server, client_for(server) as client:
        with pytest.raises(SonicHTTPError) as info:
            async with client.open_stream():
                raise AssertionError("must not be reached")
    error = info.value
    assert (error.status, error.error_type, error.retryable) == (status, error_type, retryable)
    if body:
        assert error.message == json.loads(body)["message"]


def test_http_error_falls_back_to_header_message() -> None:
    error = http_error(400, {"x-amzn-errormessage": "bad model"}, b"")
    assert (error.error_type, error.message, error.retryable) == (
        "ValidationException",
        "bad model",
        False,
    )


async def test_first_response_timeout(autojump_clock: trio.abc.Clock) -> None:
    async def handler(st: ServerStream) -> None:
        await trio.sleep_forever()

    async with fake_server(handler) as server, client_for(server, first_response_timeout=7) as c:
        start = trio.current_time()
        with pytest.raises(SonicTimeout):
            async with c.open_stream():
                raise AssertionError("must not be reached")
        assert trio.current_time() - start == pytest.approx(7, abs=0.5)
        # the abandoned stream was reset so the server can free it
        await trio.sleep(1)  # past the writer's coalescing delay
        assert server.requests[0].reset_received.is_set()


async def test_exception_frame_is_typed_and_stream_stays_readable(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def handler(st: ServerStream) -> None:
        await st.respond()
        await st.send(events.encode_exception("throttlingException", "slow down"))
        await st.send(
            events.encode_exception(
                "modelStreamErrorException", "boom", originalStatusCode=500, originalMessage="x"
            )
        )
        await st.send(chunk("completionEnd", stopReason="END_TURN"), end=True)

    async with (
        fake_server(handler) as server,
        client_for(server) as client,
        client.open_stream() as stream,
    ):
        iterator = aiter(stream)
        with pytest.raises(SonicStreamError) as first:
            await anext(iterator)
        assert (first.value.exception_type, first.value.retryable) == (
            "throttlingException",
            True,
        )
        with pytest.raises(SonicStreamError) as second:
            await anext(iterator)
        assert second.value.original_status_code == 500
        last = await anext(iterator)
        assert isinstance(last, output.CompletionEnded) and last.stop_reason == "END_TURN"
        with pytest.raises(StopAsyncIteration):
            await anext(iterator)


async def test_malformed_frame_is_an_event_stream_error(autojump_clock: trio.abc.Clock) -> None:
    async def handler(st: ServerStream) -> None:
        await st.respond()
        good = chunk("completionStart")
        bad = bytearray(good)
        bad[-1] ^= 0xFF  # message CRC broken
        await st.send(good + bytes(bad))
        await trio.sleep_forever()

    async with (
        fake_server(handler) as server,
        client_for(server) as client,
        client.open_stream() as stream,
    ):
        iterator = aiter(stream)
        assert isinstance(await anext(iterator), output.CompletionStarted)
        with pytest.raises(EventStreamError):
            await anext(iterator)
        with pytest.raises(EventStreamError):
            await anext(iterator)


async def test_message_split_across_data_frames(autojump_clock: trio.abc.Clock) -> None:
    pcm = bytes(range(256)) * 200  # ~68 KB of base64: many DATA frames

    async def handler(st: ServerStream) -> None:
        await st.respond()
        import base64

        frame = chunk("audioOutput", content=base64.b64encode(pcm).decode(), contentId="c")
        for i in range(0, len(frame), 1000):
            await st.send(frame[i : i + 1000])
        await st.end()

    async with (
        fake_server(handler) as server,
        client_for(server) as client,
        client.open_stream() as stream,
    ):
        received = [event async for event in stream]
    assert len(received) == 1
    assert isinstance(received[0], output.AudioOutput) and received[0].pcm == pcm


async def test_max_concurrent_streams_opens_a_second_connection(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def handler(st: ServerStream) -> None:
        await st.respond()
        await trio.sleep_forever()

    async with (
        fake_server(handler, max_concurrent_streams=2) as server,
        client_for(server, max_connections=3) as client,
        client.open_stream(),
        client.open_stream(),
        client.open_stream(),
    ):
        assert len(server.connections) == 2
        assert [len(c.streams) for c in server.connections] == [2, 1]


async def test_full_pool_waits_then_times_out(autojump_clock: trio.abc.Clock) -> None:
    async def handler(st: ServerStream) -> None:
        await st.respond()
        await st.receive_messages()
        await st.end()

    async with (
        fake_server(handler, max_concurrent_streams=1) as server,
        client_for(server, max_connections=1, acquire_timeout=5) as client,
    ):
        release = trio.Event()
        got_slot = trio.Event()

        async def holder(task_status: trio.TaskStatus[None]) -> None:
            async with client.open_stream():
                task_status.started()
                await release.wait()

        async def waiter() -> None:
            async with client.open_stream():
                got_slot.set()

        async with trio.open_nursery() as nursery:
            await nursery.start(holder)
            start = trio.current_time()
            with pytest.raises(SonicTimeout, match="full"):
                async with client.open_stream():
                    raise AssertionError("must not be reached")
            assert trio.current_time() - start == pytest.approx(5, abs=0.1)
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            assert not got_slot.is_set()  # waiting for the only slot...
            release.set()  # ...which it gets when the holder leaves its block
            await got_slot.wait()
        assert len(server.connections) == 1


async def test_goaway_sends_new_streams_to_a_new_connection(autojump_clock: trio.abc.Clock) -> None:
    async def handler(st: ServerStream) -> None:
        await st.respond()
        if st.conn is server.connections[0]:
            await st.conn.goaway(last_stream_id=st.stream_id)
        await st.receive_messages()
        await st.send(chunk("completionEnd", stopReason="END_TURN"), end=True)

    async with (
        fake_server(handler) as server,
        client_for(server) as client,
        client.open_stream() as first,
    ):
        await trio.testing.wait_all_tasks_blocked()
        async with client.open_stream() as second:
            await second.end_input()
            assert [type(e) async for e in second] == [output.CompletionEnded]
        # the stream running at GOAWAY time completes normally
        await first.end_input()
        assert [type(e) async for e in first] == [output.CompletionEnded]
        assert len(server.connections) == 2


async def test_rst_fails_only_its_stream(autojump_clock: trio.abc.Clock) -> None:
    async def handler(st: ServerStream) -> None:
        await st.respond()
        if len(server.requests) == 1:
            await trio.sleep(1)
            await st.reset()
            return
        await trio.sleep(2)
        await st.send(chunk("completionEnd", stopReason="END_TURN"), end=True)

    async with (
        fake_server(handler) as server,
        client_for(server) as client,
        client.open_stream() as doomed,
        client.open_stream() as healthy,
    ):
        with pytest.raises(SonicConnectionError, match="reset"):
            async for _ in doomed:
                pass
        assert [type(e) async for e in healthy] == [output.CompletionEnded]


async def test_errors_in_the_block_are_not_wrapped(autojump_clock: trio.abc.Clock) -> None:
    async def handler(st: ServerStream) -> None:
        await st.respond()
        await st.receive_messages()
        await st.end()

    async with fake_server(handler) as server:
        with pytest.raises(ValueError, match="mine"):
            async with client_for(server) as client, client.open_stream():
                raise ValueError("mine")


async def test_connect_failure_is_a_domain_error(autojump_clock: trio.abc.Clock) -> None:
    async def refuse() -> trio.abc.Stream:
        await trio.lowlevel.checkpoint()
        raise SonicConnectionError("cannot connect to bedrock.test: refused")

    async def idle(st: ServerStream) -> None:
        await trio.sleep_forever()

    async with fake_server(idle) as server, client_for(server, opener=refuse) as client:
        with pytest.raises(SonicConnectionError, match="refused"):
            async with client.open_stream():
                raise AssertionError("must not be reached")
        assert client.pool.statistics()["connect_failures"] == 1


async def test_stream_refused_by_goaway_is_retried_elsewhere(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def handler(st: ServerStream) -> None:
        if st.conn is server.connections[0] and st.stream_id > 1:
            # the request raced a GOAWAY: it is above last_stream_id, so never processed
            await st.conn.goaway(last_stream_id=1)
            return
        await st.respond()
        await st.receive_messages()
        await st.end()

    async with (
        fake_server(handler) as server,
        client_for(server) as client,
        client.open_stream(),
        client.open_stream() as retried,
    ):
        assert retried.status == 200
        assert client.streams_retried == 1
        assert len(server.connections) == 2
        assert [sorted(c.streams) for c in server.connections] == [[1, 3], [1]]


async def test_lazy_response_check_reports_http_error_on_first_read(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def handler(st: ServerStream) -> None:
        await st.receive_chunk()  # this server answers only once the first event arrived
        await st.respond(429, (("x-amzn-errortype", "ThrottlingException"),))
        await st.send(b'{"message":"later"}', end=True)

    async with (
        fake_server(handler) as server,
        client_for(server) as client,
        client.open_stream(wait_for_response=False) as stream,
    ):
        assert stream.status is None
        await stream.send(events.session_start())
        with pytest.raises(SonicHTTPError) as info:
            await anext(aiter(stream))
        assert (info.value.status, info.value.message) == (429, "later")


async def test_a_send_cancelled_after_signing_breaks_the_stream_loudly(
    autojump_clock: trio.abc.Clock,
) -> None:
    # The server never acknowledges data, so the window (4 KiB) fills and a send waits.
    # Cancelling that send leaves a signed event unsent: every later event would fail the
    # server's chain check, so later sends must fail here, plainly, instead.
    async def handler(st: ServerStream) -> None:
        await st.respond()
        await trio.sleep_forever()

    pcm = bytes(1024)
    async with (
        fake_server(handler, initial_window=4096, auto_ack=False) as server,
        client_for(server) as client,
        client.open_stream() as stream,
    ):
        with trio.move_on_after(5) as waited:
            while True:
                await stream.send(events.audio_input(prompt_name="p", content_name="c", pcm=pcm))
        assert waited.cancelled_caught
        with pytest.raises(LocalProtocolError, match="interrupted after signing"):
            await stream.send(events.audio_input(prompt_name="p", content_name="c", pcm=pcm))


CALLER: contextvars.ContextVar[str | None] = contextvars.ContextVar("caller", default=None)


async def test_connection_tasks_do_not_inherit_the_first_callers_context(
    autojump_clock: trio.abc.Clock,
) -> None:
    # The daemon binds each call's log fields in a ContextVar; a shared connection opened on
    # behalf of one call must not carry that call's identity into its own tasks.
    async def handler(st: ServerStream) -> None:
        await st.respond()
        await trio.sleep_forever()

    async with fake_server(handler) as server, client_for(server) as client:
        token = CALLER.set("call-1")
        try:
            async with client.open_stream():
                pool = client.pool
                assert isinstance(pool, ConnectionPool)
                nursery = pool._nursery
                tasks = list(nursery.child_tasks)
                assert tasks, "the pool runs its connections in its own nursery"
                assert all(task.context.get(CALLER) is None for task in tasks)
        finally:
            CALLER.reset(token)
