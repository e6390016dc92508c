"""The harness measures what a relay with KNOWN injected delays does, over real sockets.

Why the tolerances are what they are: these tests run on trio's autojump clock, so
loopback transport and scheduling cost zero virtual time and the relay's delays are exact.
What remains is the harness's own granularity: it stamps the end of an utterance and a
barge-in onset at its 20 ms frame ticks, and the relay reacts to the arrival of a frame,
so a correct harness reads each delay within [delay, delay + one frame]. A harness off
by a frame or more (stamping the last speech frame instead of the first quiet one, timing
from the wrong event, losing the clear) fails. No wall-clock threshold is asserted.
"""

from __future__ import annotations

import pytest
import trio
import trio_websocket

from actors.errors import CarrierForbidden, CarrierUnauthorized
from devkit.simcall import CallerAuth, CallScript, Misbehaviour, run_simulated_call
from devkit.simcall.script import FRAME_S
from sessions.dialects import check_upgrade_auth, validate_twilio_upgrade
from tests.simcall.relay import RelayPlan, open_relay

EPS = 1e-9  # float rounding of virtual times


def _within_a_frame(measured: float | None, delay: float) -> bool:
    return measured is not None and delay - EPS <= measured <= delay + FRAME_S + EPS


@pytest.mark.parametrize(("dialect", "fmt"), [("twilio", "ulaw"), ("asterisk", "slin16")])
async def test_first_audio_and_barge_in_reaction_are_measured(
    autojump_clock: trio.testing.MockClock, dialect: str, fmt: str
) -> None:
    plan = RelayPlan(reply_delay=0.2, clear_delay=0.1, reply_frames=50, mark_every=10)
    script = CallScript(length=None, max_turns=3, barge_in_turn=1, barge_in_delay=0.3)
    async with open_relay(plan) as relay:
        report = await run_simulated_call(
            relay.url, dialect=dialect, assistant="esther", script=script, asterisk_format=fmt
        )
    log = relay.connections[0]
    assert log.errors == []  # every message the harness sent parsed with the daemon dialect
    assert log.started is not None and log.started.assistant == "esther"
    assert report.outcome == "completed" and report.closed_by == "caller"
    assert report.turns == 3 and len(report.reply_latencies_s) == 3
    assert all(_within_a_frame(t, 0.2) for t in report.reply_latencies_s)
    assert _within_a_frame(report.first_audio_s, 0.2)
    assert report.barge_ins == 1 and report.barge_ins_missed == 0
    assert _within_a_frame(report.barge_in_reactions_s[0], 0.1)
    assert report.clears_received == len(log.clears_sent) == 1
    # Every mark the relay sent came back (played, or at once on the clear for Twilio).
    if dialect == "twilio":
        assert sorted(log.marks_played) == sorted(log.marks_sent)
        assert report.marks_echoed == report.marks_received == len(log.marks_sent)
        assert log.stopped == "stop"
    assert report.frames_sent == log.audio_frames
    # Each reply goes out whole at once (frame_interval 0), so even the interrupted one
    # arrived complete before its clear: 3 x 50 frames.
    assert report.frames_received == 150
    assert report.admission_s is not None and report.admission_s >= 0


async def test_outbound_gap_is_measured_as_underrun(autojump_clock: trio.testing.MockClock) -> None:
    plan = RelayPlan(
        reply_delay=0.2, reply_frames=40, frame_interval=0.02, stall_at=20, stall_seconds=0.3
    )
    script = CallScript(length=None, max_turns=1)
    async with open_relay(plan) as relay:
        report = await run_simulated_call(relay.url, script=script)
    assert relay.connections[0].errors == []
    assert report.frames_received == 40 and report.responses == 1
    # Paced at exactly real time, only the injected stall is a gap the caller hears.
    assert report.underruns == 1 and report.underrun_s == pytest.approx(0.3)
    assert report.interarrival_p50_ms == pytest.approx(20.0)
    assert report.interarrival_max_ms == pytest.approx(320.0)
    assert report.jitter_ms is not None and report.jitter_ms > 0


async def test_refused_upgrade_reports_http_status(autojump_clock: trio.testing.MockClock) -> None:
    async def refuse(request: trio_websocket.WebSocketRequest) -> None:
        await request.reject(503, body=b"at capacity")

    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_websocket.serve_websocket, refuse, "127.0.0.1", 0, None)
        report = await run_simulated_call(f"ws://127.0.0.1:{server.port}", assistant="esther")
        nursery.cancel_scope.cancel()
    assert (report.outcome, report.http_status, report.error) == ("rejected", 503, "at capacity")
    assert not report.ok and report.admission_s is None


async def test_connect_failure_is_an_outcome(autojump_clock: trio.testing.MockClock) -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connection refused
        report = await run_simulated_call(f"ws://127.0.0.1:{port}")
    assert report.outcome == "connect_failed" and report.error


async def test_auth_headers_pass_the_daemon_checks(autojump_clock: trio.testing.MockClock) -> None:
    script = CallScript(length=0.5)
    async with open_relay() as relay:
        public = "wss://voice.example.com"
        auth = CallerAuth(twilio_auth_token="tok", twilio_public_url=public)
        await run_simulated_call(relay.url, assistant="a b/c", script=script, auth=auth)
        await run_simulated_call(
            relay.url,
            dialect="asterisk",
            script=script,
            auth=CallerAuth(basic=("ast", "secret")),
        )
    twilio, asterisk = relay.connections
    assert twilio.path == "/twilio/a%20b%2Fc"
    assert twilio.started is not None and twilio.started.assistant == "a b/c"
    validate_twilio_upgrade(
        auth_tokens=["tok"], public_url=public, path=twilio.path, headers=twilio.headers
    )
    with pytest.raises(CarrierForbidden):
        validate_twilio_upgrade(
            auth_tokens=["other"], public_url=public, path=twilio.path, headers=twilio.headers
        )
    assert asterisk.subprotocol == "media"
    check_upgrade_auth(asterisk.headers, basic=("ast", "secret"))
    with pytest.raises(CarrierUnauthorized):
        check_upgrade_auth(asterisk.headers, basic=("ast", "wrong"))


async def test_abrupt_disconnect_resets_without_stop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    script = CallScript(length=10.0, misbehaviour=Misbehaviour.ABRUPT_DISCONNECT)
    async with open_relay() as relay:
        report = await run_simulated_call(relay.url, script=script)
        await trio.sleep(0.1)
    log = relay.connections[0]
    assert report.outcome == "misbehaved" and report.closed_by == "caller"
    assert log.close_code == 1006 and log.stopped is None  # no close frame, no stop
    assert log.audio_frames == report.frames_sent
    assert report.frames_sent == round(script.misbehave_after / FRAME_S)


@pytest.mark.parametrize(
    ("dialect", "kind", "code"),
    [
        ("twilio", "bad_json", 4001),
        ("twilio", "bad_base64", 4002),
        ("twilio", "binary", 4004),
        ("twilio", "oversized", 4005),
        ("asterisk", "bad_control", 4001),
        ("asterisk", "oversized", 4005),
    ],
)
async def test_malformed_frame_gets_the_daemons_close_code(
    autojump_clock: trio.testing.MockClock, dialect: str, kind: str, code: int
) -> None:
    script = CallScript(length=10.0, misbehaviour=Misbehaviour.MALFORMED, malformed_kind=kind)
    async with open_relay() as relay:
        report = await run_simulated_call(relay.url, dialect=dialect, script=script)
    (error,) = relay.connections[0].errors
    assert error.close_code == code
    assert report.outcome == "misbehaved" and report.closed_by == "daemon"
    assert report.close_code == code and report.close_reason == error.reason


async def test_silent_caller_streams_but_never_speaks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    script = CallScript(length=4.0, misbehaviour=Misbehaviour.SILENCE)
    async with open_relay() as relay:
        report = await run_simulated_call(relay.url, script=script)
    log = relay.connections[0]
    assert report.outcome == "completed" and report.turns == 0
    assert log.speech_onsets == [] and log.replies_sent == []
    assert log.audio_frames == report.frames_sent == round(4.0 / FRAME_S)


async def test_daemon_closing_early_counts_unsent_frames(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def hang_up_after_a_second(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        await trio.sleep(1.0)
        await ws.aclose(1011, "boom")

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            trio_websocket.serve_websocket, hang_up_after_a_second, "127.0.0.1", 0, None
        )
        report = await run_simulated_call(
            f"ws://127.0.0.1:{server.port}", script=CallScript(length=5.0)
        )
        nursery.cancel_scope.cancel()
    assert report.outcome == "closed_by_daemon" and report.closed_by == "daemon"
    assert (report.close_code, report.close_reason) == (1011, "boom")
    assert report.frames_unsent == pytest.approx(4.0 / FRAME_S, abs=2)


async def test_asterisk_queue_over_xoff_level_pauses_then_resumes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    plan = RelayPlan(reply_frames=950, mark_every=0)  # 19 s queued at once: over 900 frames
    async with open_relay(plan) as relay:
        report = await run_simulated_call(
            relay.url, dialect="asterisk", script=CallScript(length=None, max_turns=1)
        )
    flow = [type(e).__name__ for e in relay.connections[0].events]
    flow = [name for name in flow if name.startswith("Flow")]
    assert flow == ["FlowPaused", "FlowResumed"]
    assert report.outcome == "completed" and report.assistant_audio_s == pytest.approx(19.0)
