"""Whole Asterisk calls over real sockets, with the simulated Asterisk of each release.

What real Asterisk does, as read in asterisk/asterisk ``channels/chan_websocket.c``:

- ``webchan_hangup`` closes the socket with ``ast_channel_tech_hangupcause(ast) ?: 1000``:
  there is no hang-up message, CLOSE 1000 is a normal hang-up.
- ``_create_event_MEDIA_START`` (``websocket_handoff_to_channel`` before 20.18.0) sends no
  ``channel_id`` in 20.16.0, 22.6.0, 23.0.0 and 21.x; ``connection_id`` is then the
  websocket_client.conf section for every outbound call.
- ``process_text_message`` knows ``MARK_MEDIA`` only from 20.18.0 / 22.8.0 / 23.2.0 (the
  releases that brought the JSON control format); older ones only log unknown commands.
"""

from __future__ import annotations

import logging

import pytest
import trio

from devkit.emulator.server import Emulator
from devkit.local_s3 import LocalS3
from devkit.simcall import CallerAuth, CallReport, CallScript, run_simulated_call
from sessions.logs import CallContextFilter
from sessions.serve import open_daemon
from tests.e2e.conftest import daemon_overrides, daemon_settings

BASIC = ("asterisk", "s3cret-pass")


def ended(registry: object, reason: str) -> float:
    value = registry.get_sample_value(  # type: ignore[attr-defined]
        "novavoice_calls_ended_total", {"carrier": "asterisk", "reason": reason}
    )
    return float(value or 0.0)


def records(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == event]


@pytest.fixture
def call_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Captured service logs, stamped with the call's fields as the daemon's handler does."""
    caplog.set_level(logging.INFO, logger="novavoice")
    caplog.handler.addFilter(CallContextFilter())
    return caplog


async def place_calls(
    emulator: Emulator,
    local_s3: LocalS3,
    *,
    release: str,
    calls: int = 1,
    turns: int = 2,
    settings_calls: dict[str, object] | None = None,
) -> tuple[list[CallReport], object]:
    settings = daemon_settings(admission={"asterisk_basic_auth": BASIC}, calls=settings_calls or {})
    script = CallScript(length=None, max_turns=turns, utterance_seconds=(0.6, 0.6))
    reports: list[CallReport] = []
    with trio.fail_after(40):
        async with open_daemon(settings, daemon_overrides(emulator, local_s3)) as daemon:

            async def one(seed: int) -> None:
                reports.append(
                    await run_simulated_call(
                        daemon.url,
                        dialect="asterisk",
                        assistant="esther",
                        script=script,
                        seed=seed,
                        auth=CallerAuth(basic=BASIC),
                        asterisk_json=release >= "20.18" and not release.startswith("21."),
                        asterisk_release=release,
                        # Outbound calls: connection_id is the websocket_client.conf section.
                        asterisk_connection_id="novavoice",
                    )
                )

            async with trio.open_nursery() as nursery:
                for seed in range(calls):
                    nursery.start_soon(one, seed)
            await daemon.supervisor.wait_active_calls(lambda n: n == 0)
            registry = daemon.metrics.registry
    return reports, registry


async def test_close_1000_is_a_hangup_and_turns_are_counted(
    emulator: Emulator, local_s3: LocalS3, call_logs: pytest.LogCaptureFixture
) -> None:
    """The caller hangs up the way ``webchan_hangup`` does (CLOSE 1000)."""
    [report], registry = await place_calls(emulator, local_s3, release="23.2.0")
    assert report.outcome == "completed", report
    assert report.responses == 2
    assert report.close_code == 1000 and report.closed_by == "caller"
    assert ended(registry, "hangup") == 1
    assert ended(registry, "disconnected") == 0
    [end] = records(call_logs, "call_ended")
    assert end.turns == 2  # type: ignore[attr-defined]
    assert end.reason == "hangup"  # type: ignore[attr-defined]
    # A JSON MEDIA_START proves MARK_MEDIA exists: one mark per answer, each answered.
    assert report.marks_received == 2 and report.marks_echoed == 2
    assert report.duplicate_marks == 0  # ids are unique per call (were "a0", "a0")
    assert end.marks_sent == 2 and end.marks_played == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize("release", ["21.12.0", "20.16.0"])
async def test_old_release_unique_call_ids_and_no_marks(
    release: str, emulator: Emulator, local_s3: LocalS3, call_logs: pytest.LogCaptureFixture
) -> None:
    """Two concurrent calls from a release without ``channel_id`` or ``MARK_MEDIA``."""
    reports, registry = await place_calls(emulator, local_s3, release=release, calls=2, turns=1)
    assert [r.outcome for r in reports] == ["completed", "completed"], reports
    # No MARK_MEDIA reached this release (it would only log "unknown command").
    assert [r.unknown_commands for r in reports] == [0, 0]
    assert [r.marks_received for r in reports] == [0, 0]
    ends = records(call_logs, "call_ended")
    assert len({e.call_id for e in ends}) == 2  # type: ignore[attr-defined]
    generated = records(call_logs, "call_id_generated")
    assert len(generated) == 2
    for record in generated:
        assert record.connection_id  # type: ignore[attr-defined]
        assert record.call_id.startswith(record.connection_id)  # type: ignore[attr-defined]
    for end in ends:
        assert end.marks_sent == 0  # type: ignore[attr-defined]
        assert end.turns == 1  # type: ignore[attr-defined]
        # Without marks, what the caller heard is estimated: the whole 1 s answer.
        assert end.audio_sent_s >= 1.0  # type: ignore[attr-defined]
        assert end.audio_heard_s == pytest.approx(end.audio_sent_s, abs=0.1)  # type: ignore[attr-defined]
    assert ended(registry, "hangup") == 2


async def test_marks_off_sends_none_even_to_a_release_that_has_them(
    emulator: Emulator, local_s3: LocalS3
) -> None:
    from sessions.dialects.asterisk import MarksMode

    [report], _ = await place_calls(
        emulator,
        local_s3,
        release="23.2.0",
        turns=1,
        settings_calls={"asterisk_marks": MarksMode.OFF},
    )
    assert report.outcome == "completed", report
    assert report.marks_received == 0 and report.unknown_commands == 0
