"""Whole calls with tool uses: a Twilio peer and a scripted Sonic over memory streams, the
daemon's real call channel, conversation and tool runner in between.

``hang_up`` runs under the autojump clock. ``transfer`` and the webhook talk to local HTTPS
servers over real loopback sockets, so those run on the real clock (autojump cannot see
socket I/O) and assert what was sent, never how long it took.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio
import trustme

from actors.close_codes import CloseCode
from actors.sonic import output
from devkit.fake_prompt_store import FakePromptStore
from devkit.tool_servers import FakeTwilioRest, WebhookReceiver, serve_http
from sessions.call import CallChannel
from sessions.call_records import CallDeps, CallSummary
from sessions.config import CallSettings, ToolSettings
from sessions.dialects.twilio import TwilioDialect
from sessions.logs import open_call_log
from sessions.metrics import Metrics
from tests.daemon.fakes import FakeSonic, FakeSonicStream, TwilioPeer, open_fetcher, ws_pair

IDS: dict[str, Any] = {"session_id": "s", "prompt_name": "p", "completion_id": "c"}
ACCOUNT = "AC" + "0" * 32  # the simulated Twilio's account
TOKEN = "twilio-auth-token-for-tests"
CALL_SID = "CA00"

PROMPT = """---
tools:
  - {name: hang_up, kind: hang_up, description: End the call}
  - name: reception
    kind: transfer
    description: Transfer to the front desk
    target: "+15551234567"
  - name: lookup
    kind: webhook
    description: Find an appointment
    url: URL
    secret_env: LOOKUP_SECRET
    timeout: 2
---
You are Esther, a receptionist.
"""

Script = Callable[[TwilioPeer, FakeSonic], Awaitable[None]]


def tool_use(tool_use_id: str, name: str, content: str = "{}") -> output.ToolUse:
    return output.ToolUse(
        **IDS, content_id="t-" + tool_use_id, tool_name=name, tool_use_id=tool_use_id,
        content=content,
    )  # fmt: skip


def audio_start(content_id: str) -> output.ContentStarted:
    return output.ContentStarted(
        **IDS, content_id=content_id, kind=output.ContentKind.AUDIO, role="ASSISTANT"
    )


def audio(content_id: str, pcm: bytes) -> output.AudioOutput:
    return output.AudioOutput(**IDS, content_id=content_id, pcm=pcm)


def audio_end(content_id: str) -> output.ContentEnded:
    return output.ContentEnded(
        **IDS, content_id=content_id, kind=output.ContentKind.AUDIO, role="ASSISTANT",
        stop_reason="END_TURN",
    )  # fmt: skip


def tool_results(stream: FakeSonicStream) -> list[dict[str, Any]]:
    return [e["toolResult"] for e in stream.sent if "toolResult" in e]


async def run_call(
    script: Script,
    *,
    prompt: str,
    tools: ToolSettings | None = None,
    twilio_token: str | None = None,
) -> tuple[CallSummary, TwilioPeer, FakeSonic]:
    sonic = FakeSonic()
    store = FakePromptStore()
    store.put("esther", prompt)
    metrics = Metrics(process_metrics=False)
    result: list[CallSummary] = []
    async with (
        open_fetcher(store) as (fetcher, _cache),
        open_call_log(None) as call_log,
        ws_pair() as (server_ws, client_ws),
    ):
        deps = CallDeps(
            prompts=fetcher,
            sonic=sonic,
            metrics=metrics,
            call_log=call_log,
            settings=CallSettings(),
            tools=tools or ToolSettings(),
            twilio_auth_token=twilio_token,
        )
        peer = TwilioPeer(client_ws, call_sid=CALL_SID)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.receive_all)

            async def call() -> None:
                with metrics.call("twilio") as cm:
                    channel = CallChannel(server_ws, TwilioDialect(path="/twilio/esther"), deps, cm)
                    result.append(await channel.run())

            nursery.start_soon(call)
            await script(peer, sonic)
    return result[0], peer, sonic


async def wait_stream(sonic: FakeSonic) -> FakeSonicStream:
    await sonic.opened.wait()
    stream = sonic.streams[0]
    await stream.audio_sent.wait()
    return stream


async def test_hang_up_ends_the_call_after_the_sentence_with_4310(
    autojump_clock: trio.abc.Clock,
) -> None:
    goodbye = bytes(16000)  # one second of PCM16 at 8 kHz
    ended_at: list[float] = []

    async def script(peer: TwilioPeer, sonic: FakeSonic) -> None:
        await peer.start()
        for _ in range(5):
            await peer.media(b"\xff" * 160)
            await trio.sleep(0.02)
        stream = await wait_stream(sonic)
        t0 = trio.current_time()
        stream.feed(audio_start("a1"))
        stream.feed(audio("a1", goodbye))
        stream.feed(audio_end("a1"))
        stream.feed(tool_use("h1", "hang_up"))
        with trio.fail_after(30):
            while not peer.ws.closed:
                await peer.media(b"\xff" * 160)
                await trio.sleep(0.02)
        ended_at.append(trio.current_time() - t0)

    summary, peer, sonic = await run_call(
        script, prompt=PROMPT.replace("URL", "https://x.example/h")
    )
    assert summary.end is not None
    assert (summary.end.reason, summary.end.code) == (
        "assistant_hang_up",
        CloseCode.ASSISTANT_HANG_UP,
    )
    assert peer.ws.closed is not None and peer.ws.closed.code == 4310
    # The whole goodbye reached the caller before the end (one second of μ-law: 8000 bytes).
    assert len(peer.audio()) >= 8000
    # ...and the call ended only once it had played (plus the quiet spell), not at once.
    assert ended_at[0] >= 1.0
    [result] = tool_results(sonic.streams[0])
    assert json.loads(result["content"])["status"] == "ending"


def write_ca(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def server_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    return ctx


async def test_transfer_updates_the_call_at_twilio_then_ends_with_4311(tmp_path: Path) -> None:
    ca = trustme.CA()
    twilio = FakeTwilioRest(ACCOUNT, TOKEN)
    async with trio.open_nursery() as servers:
        port = await servers.start(
            lambda task_status: serve_http(
                twilio.handle, ssl_context=server_ctx(ca), task_status=task_status
            )
        )
        settings = ToolSettings(
            twilio_api_base_url=f"https://127.0.0.1:{port}",
            ca_bundle=write_ca(ca, tmp_path),
            quiet_after_speech=0.1,
        )

        async def script(peer: TwilioPeer, sonic: FakeSonic) -> None:
            await peer.start()
            await peer.media(b"\xff" * 160)
            stream = await wait_stream(sonic)
            stream.feed(tool_use("x1", "reception"))
            with trio.fail_after(20):
                await twilio.updated.wait()
                while not peer.ws.closed:
                    await peer.media(b"\xff" * 160)
                    await trio.sleep(0.02)

        summary, peer, sonic = await run_call(
            script,
            prompt=PROMPT.replace("URL", "https://x.example/h"),
            tools=settings,
            twilio_token=TOKEN,
        )
        servers.cancel_scope.cancel()
    [update] = twilio.updates
    assert (update.account_sid, update.call_sid) == (ACCOUNT, CALL_SID)
    assert update.twiml == "<Response><Dial>+15551234567</Dial></Response>"
    assert summary.end is not None and summary.end.code == CloseCode.TRANSFERRED
    assert peer.ws.closed is not None and peer.ws.closed.code == 4311
    [result] = tool_results(sonic.streams[0])
    assert json.loads(result["content"]) == {"status": "transferred"}


async def test_webhook_and_a_timed_out_tool_each_get_one_result_and_the_call_goes_on(
    tmp_path: Path, monkeypatch: Any
) -> None:
    ca = trustme.CA()
    secret = "lookup-secret-123"
    monkeypatch.setenv("LOOKUP_SECRET", secret)
    receiver = WebhookReceiver(secret.encode())
    slow = WebhookReceiver(secret.encode(), delay=30)
    async with trio.open_nursery() as servers:
        port = await servers.start(
            lambda task_status: serve_http(
                receiver.handle, ssl_context=server_ctx(ca), task_status=task_status
            )
        )
        slow_port = await servers.start(
            lambda task_status: serve_http(
                slow.handle, ssl_context=server_ctx(ca), task_status=task_status
            )
        )
        prompt = PROMPT.replace("URL", f"https://127.0.0.1:{port}/lookup").replace(
            "    timeout: 2\n",
            "    timeout: 2\n"
            "  - name: slow\n    kind: webhook\n    description: Slow\n"
            f"    url: https://127.0.0.1:{slow_port}/slow\n"
            "    secret_env: LOOKUP_SECRET\n    timeout: 0.5\n",
        )

        async def script(peer: TwilioPeer, sonic: FakeSonic) -> None:
            await peer.start()
            await peer.media(b"\xff" * 160)
            stream = await wait_stream(sonic)
            stream.feed(tool_use("w1", "lookup", '{"day": "monday"}'))
            stream.feed(tool_use("s1", "slow"))
            with trio.fail_after(20):
                while len(tool_results(stream)) < 2:
                    await peer.media(b"\xff" * 160)
                    await trio.sleep(0.02)
            # The call goes on: more audio flows to Sonic after both results.
            before = len(stream.sent)
            for _ in range(20):
                await peer.media(b"\xff" * 160)
                await trio.sleep(0.02)
            assert len(stream.sent) > before
            await peer.stop()

        summary, _peer, sonic = await run_call(
            script, prompt=prompt, tools=ToolSettings(ca_bundle=write_ca(ca, tmp_path))
        )
        servers.cancel_scope.cancel()
    assert summary.end is not None and summary.end.reason == "hangup"
    results = tool_results(sonic.streams[0])
    assert len(results) == 2
    by_content = [json.loads(r["content"]) for r in results]
    assert {"content": "ok"} in by_content
    assert {"error": "the tool did not answer within 0.5 s"} in by_content or {
        "error": "webhook timed out"
    } in by_content
    [call] = receiver.calls
    assert call.signature_valid
    assert call.body["input"] == {"day": "monday"} and call.body["call_id"] == CALL_SID


async def test_hang_up_on_asterisk_sends_hangup_then_closes_with_4310(
    autojump_clock: trio.abc.Clock,
) -> None:
    from trio_websocket import ConnectionClosed

    from devkit.simcall import AsteriskCaller
    from sessions.dialects.asterisk import AsteriskDialect

    sonic = FakeSonic()
    store = FakePromptStore()
    store.put("esther", PROMPT.replace("URL", "https://x.example/h"))
    metrics = Metrics(process_metrics=False)
    caller = AsteriskCaller(connection_id="c1", channel_id="1761234567.42")
    texts: list[str] = []
    closed: list[int | None] = []
    result: list[CallSummary] = []
    async with (
        open_fetcher(store) as (fetcher, _cache),
        open_call_log(None) as call_log,
        ws_pair() as (server_ws, client_ws),
    ):
        deps = CallDeps(
            prompts=fetcher, sonic=sonic, metrics=metrics, call_log=call_log,
            settings=CallSettings(), tools=ToolSettings(quiet_after_speech=0.5),
        )  # fmt: skip

        async def receive() -> None:
            try:
                while True:
                    message = await client_ws.get_message()
                    if isinstance(message, str):
                        texts.append(message)
            except ConnectionClosed as exc:
                closed.append(exc.reason.code if exc.reason is not None else None)

        async def call() -> None:
            with metrics.call("asterisk") as cm:
                dialect = AsteriskDialect(path="/asterisk/esther")
                result.append(await CallChannel(server_ws, dialect, deps, cm).run())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            nursery.start_soon(call)
            await client_ws.send_message(caller.media_start())
            await client_ws.send_message(caller.media(b"\xff" * 160))
            stream = await wait_stream(sonic)
            stream.feed(tool_use("h1", "hang_up"))
            with trio.fail_after(30):
                while not closed:
                    await client_ws.send_message(caller.media(b"\xff" * 160))
                    await trio.sleep(0.02)
    assert [json.loads(t) for t in texts][-1] == {"command": "HANGUP"}
    assert closed == [4310]
    assert result[0].end is not None and result[0].end.reason == "assistant_hang_up"
