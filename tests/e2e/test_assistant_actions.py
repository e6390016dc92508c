"""Whole calls against the emulator for what an assistant does beyond talking: it speaks
first (greeting), hears keypad digits as text (both carriers), and a tool use that cannot run
(its signing secret is not configured) gets an error result while the call goes on.

Simulated carriers → daemon → emulator, prompts from moto, everything on loopback.
"""

from __future__ import annotations

import logging

import pytest
import trio

from devkit.emulator import open_emulator
from devkit.emulator.server import Emulator
from devkit.local_s3 import LocalS3
from devkit.simcall import CallerAuth, CallScript, run_simulated_call
from sessions.serve import open_daemon
from tests.e2e.conftest import daemon_overrides, daemon_settings, emulator_config, put_prompt

GREETING = "Hello, this is Esther from the front desk."
KEYS = ((0.4, "1"), (0.5, "2"), (0.6, "3"), (0.7, "4"), (0.8, "#"))
ASTERISK_TOKEN = "asterisk-bearer-token"


async def test_greeting_is_heard_before_the_caller_speaks(
    emulator: Emulator, local_s3: LocalS3
) -> None:
    put_prompt(local_s3, "greeter", f'---\ngreeting: "{GREETING}"\n---\nYou are Esther.\n')
    # The caller stays silent 3 s, then says one thing.
    script = CallScript(length=None, max_turns=1, utterance_seconds=(0.6, 0.6), lead_silence=3.0)
    with trio.fail_after(40):
        async with open_daemon(daemon_settings(), daemon_overrides(emulator, local_s3)) as d:
            report = await run_simulated_call(d.url, assistant="greeter", script=script)
            await d.supervisor.wait_active_calls(lambda n: n == 0)
        await emulator.wait_idle()
    assert report.outcome == "completed", report
    # The whole 1 s greeting played before the caller's first word; then the answer.
    assert report.audio_before_speech_s >= 0.9
    assert report.responses == 2
    stats = emulator.statistics()
    assert stats.greetings == 1 and stats.cross_modal_texts == 1
    assert GREETING in stats.texts[0]
    assert stats.validation_errors == 0


async def test_without_a_greeting_the_assistant_waits_for_the_caller(
    emulator: Emulator, local_s3: LocalS3
) -> None:
    script = CallScript(length=None, max_turns=1, utterance_seconds=(0.6, 0.6), lead_silence=2.0)
    with trio.fail_after(40):
        async with open_daemon(daemon_settings(), daemon_overrides(emulator, local_s3)) as d:
            report = await run_simulated_call(d.url, assistant="esther", script=script)
    assert report.outcome == "completed", report
    assert report.audio_before_speech_s == 0.0
    assert emulator.statistics().greetings == 0


@pytest.mark.parametrize("dialect", ["twilio", "asterisk"])
async def test_keypad_digits_reach_the_model_as_text_and_never_the_service_log(
    dialect: str, emulator: Emulator, local_s3: LocalS3, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    # Credentials for the carrier under test only: with one carrier's set, the other's
    # route is closed (sessions/carrier_auth.py).
    admission = {"asterisk_bearer_token": ASTERISK_TOKEN} if dialect == "asterisk" else {}
    settings = daemon_settings(admission=admission)
    script = CallScript(
        length=None, max_turns=1, utterance_seconds=(0.6, 0.6), lead_silence=3.0, keypad=KEYS
    )
    with trio.fail_after(40):
        async with open_daemon(settings, daemon_overrides(emulator, local_s3)) as d:
            report = await run_simulated_call(
                d.url,
                dialect=dialect,
                assistant="esther",
                script=script,
                auth=CallerAuth(bearer_token=ASTERISK_TOKEN),
            )
            await d.supervisor.wait_active_calls(lambda n: n == 0)
        await emulator.wait_idle()
    assert report.outcome == "completed", report
    assert report.keys_sent == 5
    stats = emulator.statistics()
    assert stats.texts == ("[The caller entered on the phone keypad: 1234#]",)
    assert stats.greetings == 0  # sent after audio flowed: an entry, not a greeting
    assert stats.validation_errors == 0
    # The model answered the entry before the caller spoke: its reply was heard.
    assert report.audio_before_speech_s >= 0.9
    [entry] = [r for r in caplog.records if getattr(r, "event", None) == "keypad_entry"]
    assert entry.digits == 4 and entry.ended_by == "terminator"  # type: ignore[attr-defined]
    for record in caplog.records:
        assert "1234" not in record.getMessage()
        assert all("1234" not in str(v) for v in vars(record).values())


async def test_a_tool_use_that_cannot_run_gets_an_error_result_and_the_call_goes_on(
    local_s3: LocalS3,
) -> None:
    put_prompt(
        local_s3,
        "tooled",
        "---\ntools:\n  - name: lookup_order\n    description: Look up an order\n"
        "    kind: webhook\n    url: https://orders.example/lookup\n"
        # Its secret variable is not set: the tool cannot run and answers with an error.
        "    secret_env: NOVAVOICE_E2E_UNSET_SECRET\n---\nYou help.\n",
    )
    script = CallScript(length=None, max_turns=2, utterance_seconds=(0.6, 0.6))
    with trio.fail_after(40):
        async with (
            open_emulator(emulator_config(tool_use_turn=1)) as emulator,
            open_daemon(daemon_settings(), daemon_overrides(emulator, local_s3)) as d,
        ):
            report = await run_simulated_call(d.url, assistant="tooled", script=script)
            await d.supervisor.wait_active_calls(lambda n: n == 0)
            await emulator.wait_idle()
            stats = emulator.statistics()
    assert report.outcome == "completed", report
    assert report.turns == 2
    assert stats.tool_uses == 1 and stats.tool_results == 1
    assert stats.tool_uses_unanswered == 0 and stats.tool_results_out_of_order == 0
    assert stats.validation_errors == 0
    assert stats.streams_completed == 1
