"""Whole calls against the emulator where the model uses the assistant's tools.

Simulated carriers → daemon → emulator (which emits a ``toolUse`` at the start of its reply to
a chosen caller turn), prompts from moto; the tools reach local servers over loopback HTTPS
with a throwaway trustme CA: the fake Twilio REST endpoint and a webhook receiver that
verifies each request's signature.
"""

from __future__ import annotations

import random
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trustme

from actors.close_codes import CloseCode
from devkit.emulator import open_emulator
from devkit.local_s3 import LocalS3
from devkit.simcall import CallerAuth, CallScript, run_simulated_call
from devkit.simcall.call import _hex_id
from devkit.tool_servers import FakeTwilioRest, Handler, WebhookReceiver, serve_http
from sessions.serve import open_daemon
from tests.e2e.conftest import daemon_overrides, daemon_settings, emulator_config, put_prompt

ACCOUNT = "AC00000000000000000000000000000000"  # the simulated Twilio's account
TOKEN = "twilio-auth-token-for-tests"
PUBLIC = "wss://voice.example.com"
SECRET = "webhook-secret-for-tests"
ASTERISK_TOKEN = "asterisk-bearer-token"


def twilio_call_sid(seed: int = 0) -> str:
    """The CallSid the simulated Twilio sends for ``seed`` (drawn after the StreamSid)."""
    rng = random.Random(seed)
    _hex_id(rng, "MZ")
    return _hex_id(rng, "CA")


def prompt(*tools: str) -> str:
    return "---\ntools:\n" + "".join(tools) + "---\nYou are Esther, a receptionist.\n"


HANG_UP = "  - {name: hang_up, kind: hang_up, description: End the call}\n"
TRANSFER = (
    "  - name: reception\n    kind: transfer\n    description: Transfer to the front desk\n"
    "    target: '+15551234567'\n"
)


def webhook(name: str, url: str, timeout: float) -> str:
    return (
        f"  - name: {name}\n    kind: webhook\n    description: Ask the booking system\n"
        f"    url: {url}\n    secret_env: E2E_HOOK_SECRET\n    timeout: {timeout}\n"
    )


@attrs.frozen
class Servers:
    ca_file: str
    ports: tuple[int, ...]


@asynccontextmanager
async def https_servers(tmp_path: Path, *handlers: Handler) -> AsyncIterator[Servers]:
    ca = trustme.CA()
    ca_file = tmp_path / "tools-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    async with trio.open_nursery() as nursery:
        ports = []
        for handler in handlers:
            ports.append(
                await nursery.start(
                    lambda task_status, h=handler: serve_http(
                        h, ssl_context=ctx, task_status=task_status
                    )
                )
            )
        yield Servers(str(ca_file), tuple(ports))
        nursery.cancel_scope.cancel()


async def test_transfer_reaches_twilio_rest_with_the_call_sid_and_dial_twiml(
    local_s3: LocalS3, tmp_path: Path
) -> None:
    put_prompt(local_s3, "desk", prompt(TRANSFER))
    twilio = FakeTwilioRest(ACCOUNT, TOKEN)
    config = attrs.evolve(emulator_config(tool_use_turn=1), tool_use_name="reception")
    script = CallScript(length=None, max_turns=3, utterance_seconds=(0.6, 0.6))
    with trio.fail_after(40):
        async with https_servers(tmp_path, twilio.handle) as servers, open_emulator(config) as emu:
            settings = daemon_settings(
                admission={"twilio_auth_tokens": (TOKEN,), "twilio_public_url": PUBLIC},
                tools={
                    "twilio_api_base_url": f"https://127.0.0.1:{servers.ports[0]}",
                    "ca_bundle": servers.ca_file,
                    "quiet_after_speech": 0.3,
                },
            )
            async with open_daemon(settings, daemon_overrides(emu, local_s3)) as d:
                report = await run_simulated_call(
                    d.url,
                    assistant="desk",
                    script=script,
                    auth=CallerAuth(twilio_auth_token=TOKEN, twilio_public_url=PUBLIC),
                )
                await d.supervisor.wait_active_calls(lambda n: n == 0)
            await emu.wait_idle()
            stats = emu.statistics()
    [update] = twilio.updates
    assert update.account_sid == ACCOUNT
    assert update.call_sid == twilio_call_sid()
    assert update.twiml == "<Response><Dial>+15551234567</Dial></Response>"
    assert twilio.refused == 0
    # The first answer was heard whole before the hand-over; then the stream ended (4311).
    assert report.assistant_audio_s >= 1.0
    assert report.close_code == CloseCode.TRANSFERRED and report.closed_by == "daemon"
    assert stats.tool_uses == 1 and stats.tool_results == 1
    assert stats.validation_errors == 0


async def test_a_webhook_runs_over_loopback_https_signed_and_its_answer_reaches_the_model(
    local_s3: LocalS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("E2E_HOOK_SECRET", SECRET)
    receiver = WebhookReceiver(SECRET.encode())
    config = attrs.evolve(emulator_config(tool_use_turn=1), tool_use_name="bookings")
    script = CallScript(length=None, max_turns=2, utterance_seconds=(0.6, 0.6))
    with trio.fail_after(40):
        async with (
            https_servers(tmp_path, receiver.handle) as servers,
            open_emulator(config) as emu,
        ):
            url = f"https://127.0.0.1:{servers.ports[0]}/novavoice/bookings"
            put_prompt(local_s3, "booker", prompt(webhook("bookings", url, 3)))
            settings = daemon_settings(tools={"ca_bundle": servers.ca_file})
            async with open_daemon(settings, daemon_overrides(emu, local_s3)) as d:
                report = await run_simulated_call(d.url, assistant="booker", script=script)
                await d.supervisor.wait_active_calls(lambda n: n == 0)
            await emu.wait_idle()
            stats = emu.statistics()
    assert report.outcome == "completed", report
    assert report.turns == 2
    [call] = receiver.calls
    assert call.signature_valid  # HMAC-SHA256 over "timestamp.body" with the shared secret
    assert call.body == {
        "tool": "bookings",
        "input": {"reason": "emulated"},
        "call_id": twilio_call_sid(),
        "assistant": "booker",
    }
    assert stats.tool_uses == 1 and stats.tool_results == 1
    assert stats.tool_uses_unanswered == 0 and stats.validation_errors == 0


async def test_a_tool_that_times_out_gets_an_error_result_and_the_call_continues(
    local_s3: LocalS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("E2E_HOOK_SECRET", SECRET)
    slow = WebhookReceiver(SECRET.encode(), delay=30)
    config = attrs.evolve(emulator_config(tool_use_turn=1), tool_use_name="slow")
    script = CallScript(length=None, max_turns=3, utterance_seconds=(0.6, 0.6))
    with trio.fail_after(40):
        async with https_servers(tmp_path, slow.handle) as servers, open_emulator(config) as emu:
            url = f"https://127.0.0.1:{servers.ports[0]}/slow"
            put_prompt(local_s3, "slowpoke", prompt(webhook("slow", url, 0.5)))
            settings = daemon_settings(tools={"ca_bundle": servers.ca_file})
            async with open_daemon(settings, daemon_overrides(emu, local_s3)) as d:
                report = await run_simulated_call(d.url, assistant="slowpoke", script=script)
                await d.supervisor.wait_active_calls(lambda n: n == 0)
            await emu.wait_idle()
            stats = emu.statistics()
    assert len(slow.calls) == 1  # the request went out and never got its answer in time
    assert stats.tool_uses == 1 and stats.tool_results == 1  # exactly one (error) result
    assert stats.tool_uses_unanswered == 0 and stats.validation_errors == 0
    # The call went on: every turn answered, and it ended the caller's way.
    assert report.outcome == "completed", report
    assert report.turns == 3 and report.responses >= 3
    assert report.close_code == 1000 and report.closed_by == "caller"


@pytest.mark.parametrize("dialect", ["twilio", "asterisk"])
async def test_hang_up_ends_the_call_after_the_sentence(
    dialect: str, local_s3: LocalS3, tmp_path: Path
) -> None:
    put_prompt(local_s3, "closer", prompt(HANG_UP))
    config = attrs.evolve(emulator_config(tool_use_turn=1), tool_use_name="hang_up")
    script = CallScript(length=None, max_turns=3, utterance_seconds=(0.6, 0.6))
    # Credentials for the carrier under test only: with one carrier's set, the other's
    # route is closed (sessions/carrier_auth.py).
    admission = {"asterisk_bearer_token": ASTERISK_TOKEN} if dialect == "asterisk" else {}
    settings = daemon_settings(admission=admission, tools={"quiet_after_speech": 0.5})
    extra: dict[str, Any] = {}
    if dialect == "asterisk":
        extra = {"auth": CallerAuth(bearer_token=ASTERISK_TOKEN)}
    with trio.fail_after(40):
        async with open_emulator(config) as emu:
            async with open_daemon(settings, daemon_overrides(emu, local_s3)) as d:
                report = await run_simulated_call(
                    d.url, dialect=dialect, assistant="closer", script=script, **extra
                )
                await d.supervisor.wait_active_calls(lambda n: n == 0)
                ended = d.metrics.registry.get_sample_value(
                    "novavoice_calls_ended_total",
                    {"carrier": dialect, "reason": "assistant_hang_up"},
                )
            await emu.wait_idle()
            stats = emu.statistics()
    # The toolUse came at the start of the first answer; the answer (1 s) was still heard
    # in full before the call ended, and the caller never got to a second turn.
    assert report.assistant_audio_s >= 1.0
    assert report.turns == 1
    assert ended == 1
    if dialect == "twilio":
        assert report.close_code == CloseCode.ASSISTANT_HANG_UP and report.closed_by == "daemon"
    else:
        # chan_websocket's HANGUP: Asterisk hangs the channel up (the simulated one closes).
        assert report.outcome == "hangup_by_daemon", report
    assert stats.tool_uses == 1 and stats.tool_results == 1
