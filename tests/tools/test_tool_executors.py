"""The executors against local servers: signed webhooks over loopback HTTPS, the Twilio
call update against the fake REST endpoint, hang-up and transfer through a fake call."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import attrs
import pytest
import trio
import trustme

from actors.assistant_tools import ToolSpec
from actors.tool_calls import ToolResult, ToolUse
from actors.tool_executors import ToolContext, build_tools
from actors.tool_http import TwilioRest, dial_twiml
from actors.tool_runner import open_tool_runner
from devkit.tool_servers import FakeTwilioRest, HttpResponse, WebhookReceiver, serve_http

SECRET = "s3cr3t-webhook-key"
ACCOUNT = "AC" + "1" * 32
TOKEN = "twilio-token-0123"
CALL_SID = "CA" + "2" * 32


@attrs.define
class FakeCall:
    """A call as the executors see it (CallControl), recording what they asked."""

    carrier: str = "twilio"
    call_id: str = CALL_SID
    account_id: str | None = ACCOUNT
    log: list[str] = attrs.field(factory=list)

    async def wait_speech_finished(self) -> None:
        await trio.sleep(0.01)
        self.log.append("speech finished")

    async def hang_up_after_speech(self) -> None:
        await trio.lowlevel.checkpoint()
        self.log.append("hang up")

    def end_transferred(self) -> None:
        self.log.append("transferred")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx


def client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


@attrs.define
class Sink:
    results: list[ToolResult] = attrs.field(factory=list)
    call: FakeCall | None = None
    arrived: trio.Event = attrs.field(factory=trio.Event)

    async def __call__(self, result: ToolResult) -> None:
        await trio.lowlevel.checkpoint()
        if self.call is not None:
            self.call.log.append("result")
        self.results.append(result)
        self.arrived.set()
        self.arrived = trio.Event()


@asynccontextmanager
async def running_tools(
    specs: tuple[ToolSpec, ...],
    ca: trustme.CA,
    *,
    call: FakeCall | None = None,
    twilio: TwilioRest | None = None,
    secrets: dict[str, str] | None = None,
) -> AsyncIterator[tuple[Callable[[ToolUse], Awaitable[None]], Sink]]:
    call = call or FakeCall()
    sink = Sink(call=call)
    context = ToolContext(
        control=call,
        assistant="dental-clinic",
        ssl_context=client_ctx(ca),
        twilio=twilio,
        secrets={"HOOK_SECRET": SECRET} if secrets is None else secrets,
    )
    async with open_tool_runner(build_tools(specs, context), sink) as runner:
        yield runner.submit, sink


async def wait_for(sink: Sink, count: int = 1) -> list[ToolResult]:
    with trio.fail_after(10):
        while len(sink.results) < count:
            await sink.arrived.wait()
    return sink.results


def webhook(url: str, **kw: object) -> ToolSpec:
    return ToolSpec(
        name="lookup",
        description="Find an appointment",
        kind="webhook",
        url=url,
        secret_env="HOOK_SECRET",
        **kw,  # type: ignore[arg-type]
    )


# --- webhooks ------------------------------------------------------------------------------


async def test_webhook_posts_a_signed_request_over_https(ca: trustme.CA) -> None:
    receiver = WebhookReceiver(
        SECRET.encode(),
        reply=lambda body: HttpResponse(200, b'{"content":"Tuesday 10:00 is free"}'),
    )
    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            lambda task_status: serve_http(
                receiver.handle, ssl_context=server_ctx(ca), task_status=task_status
            )
        )
        url = f"https://127.0.0.1:{port}/hooks/lookup"
        async with running_tools((webhook(url),), ca) as (submit, sink):
            await submit(ToolUse("t1", "lookup", '{"day":"tuesday"}'))
            [result] = await wait_for(sink)
        nursery.cancel_scope.cancel()
    assert result == ToolResult("t1", '{"content": "Tuesday 10:00 is free"}')
    [call] = receiver.calls
    assert call.signature_valid
    assert abs(int(call.timestamp) - time.time()) < 60  # Unix seconds, when it was sent
    assert call.body == {
        "tool": "lookup",
        "input": {"day": "tuesday"},
        "call_id": CALL_SID,
        "assistant": "dental-clinic",
    }


async def test_webhook_without_its_secret_is_never_called(ca: trustme.CA) -> None:
    receiver = WebhookReceiver(SECRET.encode())
    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            lambda task_status: serve_http(
                receiver.handle, ssl_context=server_ctx(ca), task_status=task_status
            )
        )
        url = f"https://127.0.0.1:{port}/hook"
        async with running_tools((webhook(url),), ca, secrets={}) as (submit, sink):
            await submit(ToolUse("t1", "lookup", "{}"))
            [result] = await wait_for(sink)
        nursery.cancel_scope.cancel()
    assert result.is_error
    assert "signing secret is not configured" in result.content
    assert receiver.calls == []


async def test_webhook_redirect_is_not_followed(ca: trustme.CA) -> None:
    target = WebhookReceiver(SECRET.encode())
    async with trio.open_nursery() as nursery:
        target_port = await nursery.start(
            lambda task_status: serve_http(
                target.handle, ssl_context=server_ctx(ca), task_status=task_status
            )
        )
        location = f"https://127.0.0.1:{target_port}/internal"

        async def redirect(request: object) -> HttpResponse:
            await trio.lowlevel.checkpoint()
            return HttpResponse(302, b"", (("location", location),))

        port = await nursery.start(
            lambda task_status: serve_http(
                redirect, ssl_context=server_ctx(ca), task_status=task_status
            )
        )
        async with running_tools((webhook(f"https://127.0.0.1:{port}/h"),), ca) as (submit, sink):
            await submit(ToolUse("t1", "lookup", "{}"))
            [result] = await wait_for(sink)
        nursery.cancel_scope.cancel()
    assert result.is_error
    assert json.loads(result.content) == {"error": "webhook answered HTTP 302"}
    assert target.calls == []


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (HttpResponse(200, b"not json"), "webhook response is not JSON"),
        (HttpResponse(200, b'["a"]'), "webhook response is not a JSON object"),
        (HttpResponse(200, b'{"text":"x"}'), "webhook response has no 'content' string"),
        (
            HttpResponse(200, b'{"content":"' + b"a" * 17000 + b'"}'),
            "webhook response over 16384 bytes",
        ),
        (HttpResponse(500, b'{"content":"x"}'), "webhook answered HTTP 500"),
        (HttpResponse(200, b'{"content":"no such patient","is_error":true}'), "no such patient"),
    ],
)
async def test_webhook_response_must_match_the_schema(
    ca: trustme.CA, reply: HttpResponse, error: str
) -> None:
    receiver = WebhookReceiver(SECRET.encode(), reply=lambda body: reply)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            lambda task_status: serve_http(
                receiver.handle, ssl_context=server_ctx(ca), task_status=task_status
            )
        )
        async with running_tools((webhook(f"https://127.0.0.1:{port}/h"),), ca) as (submit, sink):
            await submit(ToolUse("t1", "lookup", "{}"))
            [result] = await wait_for(sink)
        nursery.cancel_scope.cancel()
    assert result.is_error
    assert json.loads(result.content) == {"error": error}


async def test_slow_webhook_times_out_and_the_next_tool_still_runs(ca: trustme.CA) -> None:
    slow = WebhookReceiver(SECRET.encode(), delay=30)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            lambda task_status: serve_http(
                slow.handle, ssl_context=server_ctx(ca), task_status=task_status
            )
        )
        spec = webhook(f"https://127.0.0.1:{port}/h", timeout=0.5)
        hang_up = ToolSpec(name="bye", description="End", kind="hang_up")
        async with running_tools((spec, hang_up), ca) as (submit, sink):
            await submit(ToolUse("t1", "lookup", "{}"))
            [result] = await wait_for(sink)
            await submit(ToolUse("t2", "bye", "{}"))
            await wait_for(sink, 2)
        nursery.cancel_scope.cancel()
    assert result.is_error
    assert json.loads(result.content)["error"] in (
        "the tool did not answer within 0.5 s",
        "webhook timed out",  # httpx's own read timeout may fire first: same number
    )
    assert not sink.results[1].is_error


async def test_plain_http_to_loopback_is_allowed_for_development(ca: trustme.CA) -> None:
    receiver = WebhookReceiver(SECRET.encode())
    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            lambda task_status: serve_http(receiver.handle, task_status=task_status)
        )
        async with running_tools((webhook(f"http://localhost:{port}/h"),), ca) as (submit, sink):
            await submit(ToolUse("t1", "lookup", "{}"))
            [result] = await wait_for(sink)
        nursery.cancel_scope.cancel()
    assert result == ToolResult("t1", '{"content": "ok"}')
    assert receiver.calls[0].signature_valid


async def test_a_public_plain_http_url_is_refused_before_any_request(ca: trustme.CA) -> None:
    # Not reachable from the validator (it refuses the definition); checked again at use.
    async with running_tools((webhook("http://hooks.example.com/h"),), ca) as (submit, sink):
        await submit(ToolUse("t1", "lookup", "{}"))
        [result] = await wait_for(sink)
    assert json.loads(result.content) == {
        "error": "webhook url must be https:// (http:// only to a loopback host)"
    }


# --- transfer ------------------------------------------------------------------------------


TRANSFER = ToolSpec(
    name="to-reception", description="Front desk", kind="transfer", target="+15551234567"
)


async def run_transfer(
    ca: trustme.CA, fake: FakeTwilioRest, call: FakeCall, *, token: str = TOKEN
) -> list[ToolResult]:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            lambda task_status: serve_http(
                fake.handle, ssl_context=server_ctx(ca), task_status=task_status
            )
        )
        twilio = TwilioRest(
            account_sid=ACCOUNT,
            auth_token=token,
            ssl_context=client_ctx(ca),
            base_url=f"https://127.0.0.1:{port}",
        )
        async with running_tools((TRANSFER,), ca, call=call, twilio=twilio) as (submit, sink):
            await submit(ToolUse("x1", "to-reception", "{}"))
            results = await wait_for(sink)
            await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    return results


async def test_transfer_updates_the_twilio_call_then_ends_the_stream(ca: trustme.CA) -> None:
    fake = FakeTwilioRest(ACCOUNT, TOKEN)
    call = FakeCall()
    [result] = await run_transfer(ca, fake, call)
    assert result == ToolResult("x1", '{"status":"transferred"}')
    [update] = fake.updates
    assert (update.account_sid, update.call_sid) == (ACCOUNT, CALL_SID)
    assert update.twiml == "<Response><Dial>+15551234567</Dial></Response>"
    # The sentence is heard first; the stream ends only after the model has its result.
    assert call.log == ["speech finished", "result", "transferred"]


async def test_transfer_retries_when_twilio_is_briefly_unavailable(ca: trustme.CA) -> None:
    fake = FakeTwilioRest(ACCOUNT, TOKEN, fail_next=[503, 500])
    call = FakeCall()
    [result] = await run_transfer(ca, fake, call)
    assert not result.is_error
    assert len(fake.updates) == 1
    assert call.log[-1] == "transferred"


async def test_transfer_with_a_wrong_token_fails_and_the_call_goes_on(ca: trustme.CA) -> None:
    fake = FakeTwilioRest(ACCOUNT, TOKEN)
    call = FakeCall()
    [result] = await run_transfer(ca, fake, call, token="wrong-token")
    assert result.is_error
    assert json.loads(result.content) == {"error": "transfer failed: Twilio answered HTTP 401"}
    assert fake.refused == 1  # a 401 is not retried
    assert fake.updates == []
    assert "transferred" not in call.log


async def test_transfer_on_asterisk_is_an_error_result(ca: trustme.CA) -> None:
    call = FakeCall(carrier="asterisk", account_id=None)
    async with running_tools((TRANSFER,), ca, call=call) as (submit, sink):
        await submit(ToolUse("x1", "to-reception", "{}"))
        [result] = await wait_for(sink)
    assert json.loads(result.content) == {"error": "transfer is not available on asterisk calls"}
    assert call.log == ["result"]


def test_dial_twiml_escapes_and_wraps_sip_targets() -> None:
    assert dial_twiml("sip:desk@pbx.example.com") == (
        "<Response><Dial><Sip>sip:desk@pbx.example.com</Sip></Dial></Response>"
    )
    assert dial_twiml("sip:a&b@x") == "<Response><Dial><Sip>sip:a&amp;b@x</Sip></Dial></Response>"


# --- hang_up -------------------------------------------------------------------------------


async def test_hang_up_answers_the_model_then_ends_the_call(ca: trustme.CA) -> None:
    call = FakeCall()
    spec = ToolSpec(name="hang_up", description="End the call", kind="hang_up")
    async with running_tools((spec,), ca, call=call) as (submit, sink):
        await submit(ToolUse("h1", "hang_up", "{}"))
        [result] = await wait_for(sink)
        await trio.sleep(0.05)
    assert json.loads(result.content)["status"] == "ending"
    assert call.log == ["result", "hang up"]


async def test_a_webhooks_own_error_reaches_the_model_but_not_the_log(
    ca: trustme.CA, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.INFO, logger="novavoice.tools")
    reply = HttpResponse(200, b'{"content":"no booking for Jane Doe","is_error":true}')
    receiver = WebhookReceiver(SECRET.encode(), reply=lambda body: reply)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            lambda task_status: serve_http(
                receiver.handle, ssl_context=server_ctx(ca), task_status=task_status
            )
        )
        async with running_tools((webhook(f"https://127.0.0.1:{port}/h"),), ca) as (submit, sink):
            await submit(ToolUse("t1", "lookup", "{}"))
            [result] = await wait_for(sink)
        nursery.cancel_scope.cancel()
    assert json.loads(result.content) == {"error": "no booking for Jane Doe"}
    [record] = [r for r in caplog.records if getattr(r, "event", None) == "tool_failed"]
    assert record.error == "the webhook reported an error"  # type: ignore[attr-defined]
    assert "Jane" not in caplog.text
