"""The demo's assistants that act: a greeting, a keypad entry, a signed webhook, a transfer
and a hang-up, all on loopback.

Runs beside the main demo with its own emulator (which calls the first tool an assistant
offers at the start of its first answer) and its own daemon, configured as production would
be for Twilio: ``TWILIO_AUTH_TOKEN`` (upgrade signatures and the REST API's password), the
REST API at a local fake (:class:`~devkit.tool_servers.FakeTwilioRest`) and a webhook
receiver that verifies every signature (:class:`~devkit.tool_servers.WebhookReceiver`), both
over HTTPS with a throwaway trustme CA. Five assistants are published for it:
``demo-greeter`` (a ``greeting:``, spoken before the caller says a word), ``demo-keypad``
(a ``dtmf:`` policy: the caller types ``1234#``, which reaches the model as text),
``demo-bookings`` (a webhook), ``demo-front-desk`` (a transfer) and ``demo-goodbye``
(``hang_up``).
"""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import trio
import trustme

from actors.close_codes import CloseCode
from devkit.emulator import EmulatorConfig, StreamPlan, open_emulator
from devkit.simcall import CallerAuth, CallReport, CallScript, run_simulated_call
from devkit.tool_servers import (
    FakeTwilioRest,
    Handler,
    HttpResponse,
    WebhookReceiver,
    serve_http,
)
from sessions.config import Settings
from sessions.serve import DaemonOverrides, open_daemon

Print = Callable[[str], None]

ACCOUNT = "AC00000000000000000000000000000000"  # what the simulated Twilio sends
PUBLIC_URL = "wss://voice.example.com"
SECRET_VARIABLE = "NOVAVOICE_DEMO_WEBHOOK_SECRET"


GREETING = "Hello, thank you for calling the clinic. How can I help?"
KEYS = ((0.4, "1"), (0.5, "2"), (0.6, "3"), (0.7, "4"), (0.8, "#"))


def _prompts(webhook_url: str) -> dict[str, str]:
    return {
        "demo-greeter": f'---\ngreeting: "{GREETING}"\n---\nYou are the clinic\'s receptionist.\n',
        "demo-keypad": (
            "---\ndtmf: {terminator: '#', max_digits: 8}\n---\n"
            "You take the caller's booking number, typed on the phone keypad.\n"
        ),
        "demo-bookings": (
            "---\ntools:\n  - name: next_appointment\n    kind: webhook\n"
            "    description: Find the caller's next appointment\n"
            f"    url: {webhook_url}\n    secret_env: {SECRET_VARIABLE}\n    timeout: 3\n"
            "---\nYou are the booking line of a dental clinic.\n"
        ),
        "demo-front-desk": (
            "---\ntools:\n  - name: reception\n    kind: transfer\n"
            "    description: Transfer the caller to the front desk\n"
            "    target: '+15551234567'\n---\nYou are the clinic's receptionist.\n"
        ),
        "demo-goodbye": (
            "---\ntools:\n  - {name: hang_up, kind: hang_up, description: End the call}\n"
            "---\nYou say goodbye and hang up.\n"
        ),
    }


def _remove(path: str) -> None:
    Path(path).unlink(missing_ok=True)


@asynccontextmanager
async def _https(*handlers: Handler) -> AsyncIterator[tuple[str, list[int]]]:
    """Serve ``handlers`` over HTTPS on loopback; yields the CA file and the ports."""
    ca = trustme.CA(organization_name="NovaVoice demo tools")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    fd, ca_file = tempfile.mkstemp(prefix="novavoice-demo-tools-ca-", suffix=".pem")
    os.close(fd)
    ca.cert_pem.write_to_path(ca_file)
    try:
        async with trio.open_nursery() as nursery:
            ports: list[int] = []
            for handler in handlers:

                async def serve(task_status: trio.TaskStatus[int], h: Handler = handler) -> None:
                    await serve_http(h, ssl_context=server, task_status=task_status)

                ports.append(await nursery.start(serve))
            yield ca_file, ports
            nursery.cancel_scope.cancel()
    finally:
        _remove(ca_file)


async def demo_tool_calls(
    settings: Settings,
    overrides: DaemonOverrides,
    emulator_config: EmulatorConfig,
    put_prompt: Callable[[str, str], None],
    out: Print,
) -> dict[str, bool]:
    """Publish the tool assistants, place one call each, print them; the demo's checks."""
    token = "demo-twilio-auth-token"
    secret = "demo-webhook-secret"
    os.environ[SECRET_VARIABLE] = secret  # the daemon reads webhook secrets from its env
    twilio = FakeTwilioRest(ACCOUNT, token)
    receiver = WebhookReceiver(
        secret.encode(),
        reply=lambda body: HttpResponse(200, b'{"content":"Tuesday at 10:00 with Dr Martin"}'),
    )
    plan = StreamPlan(time_to_first_audio=0.3, reply_seconds=1.5, audio_speed=4.0, tool_use_turn=1)
    script = CallScript(length=None, max_turns=2, utterance_seconds=(0.8, 1.0))
    auth = CallerAuth(twilio_auth_token=token, twilio_public_url=PUBLIC_URL)
    reports: dict[str, CallReport] = {}
    async with _https(twilio.handle, receiver.handle) as (ca_file, (twilio_port, hook_port)):
        for name, text in _prompts(f"https://127.0.0.1:{hook_port}/clinic/next").items():
            await trio.to_thread.run_sync(put_prompt, name, text)
        tool_settings = settings.replace(
            admission={"twilio_auth_tokens": (token,), "twilio_public_url": PUBLIC_URL},
            tools={
                "twilio_api_base_url": f"https://127.0.0.1:{twilio_port}",
                "ca_bundle": ca_file,
                "quiet_after_speech": 0.5,
            },
        )
        async with open_emulator(attrs.evolve(emulator_config, plan=plan)) as emulator:
            sonic = attrs.evolve(
                overrides, sonic_endpoint_url=emulator.url, sonic_ca_file=emulator.ca_file
            )
            async with open_daemon(tool_settings, sonic) as daemon:
                # The caller is silent for 3 s: the greeting (and the keypad entry's
                # answer) must come first.
                listening = CallScript(
                    length=None, max_turns=1, utterance_seconds=(0.8, 1.0), lead_silence=3.0
                )
                for title, assistant, how in (
                    ("the assistant speaks first (greeting:)", "demo-greeter", listening),
                    (
                        "the caller types 1234# (dtmf:)",
                        "demo-keypad",
                        attrs.evolve(listening, keypad=KEYS),
                    ),
                ):
                    out(f"\n== {title}")
                    report = await run_simulated_call(
                        daemon.url, assistant=assistant, script=how, auth=auth
                    )
                    await daemon.supervisor.wait_active_calls(lambda n: n == 0)
                    reports[assistant] = report
                    out(f"  {report.outcome}: code {report.close_label}, "
                        f"{report.audio_before_speech_s:.1f} s of assistant audio before the "
                        f"caller spoke")  # fmt: skip
                    texts = emulator.statistics().texts
                    if texts:
                        out(f"  the model got the text: {texts[-1]}")
                for title, assistant in (
                    ("a webhook tool (signed, over HTTPS)", "demo-bookings"),
                    ("a transfer to a human (Twilio REST)", "demo-front-desk"),
                    ("the assistant hangs up", "demo-goodbye"),
                ):
                    out(f"\n== {title}")
                    report = await run_simulated_call(
                        daemon.url, assistant=assistant, script=script, auth=auth
                    )
                    await daemon.supervisor.wait_active_calls(lambda n: n == 0)
                    reports[assistant] = report
                    out(f"  {report.outcome}: code {report.close_label}, "
                        f"{report.assistant_audio_s:.1f} s of assistant audio heard")  # fmt: skip
                    if assistant == "demo-bookings":
                        for call in receiver.calls:
                            out(f"  webhook got {call.body}, signature "
                                f"{'valid' if call.signature_valid else 'INVALID'}")  # fmt: skip
                    if assistant == "demo-front-desk":
                        for update in twilio.updates:
                            out(f"  Twilio REST: call {update.call_sid} now runs {update.twiml}")
            stats = emulator.statistics()
    out(f"  emulator: {stats.tool_uses} tool uses, {stats.tool_results} results, "
        f"{stats.tool_uses_unanswered} unanswered")  # fmt: skip
    bookings = reports["demo-bookings"]
    greeter, keypad = reports["demo-greeter"], reports["demo-keypad"]
    return {
        "the greeting was heard before the caller spoke": greeter.outcome == "completed"
        and greeter.audio_before_speech_s >= 0.9
        and stats.greetings == 1,
        "the keypad entry reached the model as text": keypad.keys_sent == len(KEYS)
        and "[The caller entered on the phone keypad: 1234#]" in stats.texts,
        "the webhook was called once, its signature valid": len(receiver.calls) == 1
        and receiver.calls[0].signature_valid,
        "the booking call went on after the tool": bookings.outcome == "completed"
        and bookings.turns == 2,
        "the transfer updated the call at Twilio with <Dial>": len(twilio.updates) == 1
        and "<Dial>+15551234567</Dial>" in twilio.updates[0].twiml,
        "the transferred call ended with 4311": reports["demo-front-desk"].close_code
        == CloseCode.TRANSFERRED,
        "hang_up ended the call after the sentence (4310)": reports["demo-goodbye"].close_code
        == CloseCode.ASSISTANT_HANG_UP
        and reports["demo-goodbye"].assistant_audio_s >= 1.0,
        "every tool use got exactly one result": stats.tool_uses == stats.tool_results == 3,
    }
