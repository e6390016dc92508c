"""``novavoice loadtest``: a small run against the relay, its JSON schema and its PNG."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from trio_websocket import WebSocketRequest, serve_websocket

from actors.errors import ConfigError
from devkit.loadtest import (
    CallLength,
    LoadPlan,
    LoadRun,
    failure_summary,
    main,
    parse_call_length,
    plan_from_args,
    resolve_target,
    write_outputs,
)
from devkit.simcall import CallReport
from sessions.cli import main as cli_main
from sessions.cli import parse_args
from tests.simcall.relay import RelayPlan, open_relay

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_call_length_parsing() -> None:
    assert parse_call_length("30") == CallLength(30.0, 30.0)
    assert parse_call_length("20:40") == CallLength(20.0, 40.0)
    for bad in ("", "x", "40:20", "0", "1:2:3"):
        with pytest.raises(Exception, match="call length"):
            parse_call_length(bad)


def test_plan_is_deterministic_and_honours_shares() -> None:
    plan = LoadPlan(
        url="ws://x", calls=1, duration=1, barge_in_share=0.5, misbehave_share=0.3, seed=4
    )
    scripts = [plan.call(i) for i in range(400)]
    assert scripts == [plan.call(i) for i in range(400)]
    barging = sum(s.barge_in_turn is not None for s, _ in scripts)
    kinds = {s.misbehaviour.value for s, _ in scripts}
    misbehaving = sum(s.misbehaviour.value != "none" for s, _ in scripts)
    assert 150 < barging < 250 and 80 < misbehaving < 160
    assert kinds == {"none", "abrupt_disconnect", "malformed", "silence"}


async def test_small_run_writes_json_and_png(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    lines: list[str] = []
    async with open_relay(RelayPlan(reply_delay=0.2, reply_frames=25)) as relay:
        plan = LoadPlan(
            url=relay.url,
            calls=3,
            duration=8.0,
            ramp=2.0,
            call_length=CallLength(3.0, 5.0),
            barge_in_share=0.5,
            misbehave_share=0.3,
            seed=1,
        )
        run = LoadRun(plan)
        await run.run(lines.append)
    assert all(c.errors == [] for c, r in zip(relay.connections, run.reports, strict=False)
               if r.misbehaviour not in ("malformed",))  # fmt: skip
    # Ramp 2/s over 8 s with 3 slots: starts at 0, 0.5, 1.0, ... until the duration ends.
    assert run.started == len(run.reports) == len(relay.connections)
    assert 3 < run.started <= 16
    assert lines and lines[0].startswith("t=    1s active=")
    json_out, png = tmp_path / "run.json", tmp_path / "run.png"
    write_outputs(run, json_out, png)
    doc = json.loads(json_out.read_text())
    assert set(doc) == {"plan", "elapsed_s", "aggregate", "timeline", "calls"}
    assert doc["plan"]["auth"] == {
        "twilio_auth_token": False,
        "twilio_public_url": False,
        "basic": False,
        "bearer_token": False,
    }
    agg = doc["aggregate"]
    assert agg["calls"] == len(doc["calls"]) == run.started
    assert agg["ok"] + agg["failed"] == agg["calls"]
    assert set(agg["first_audio_s"]) == {"count", "p50", "p90", "p99", "max"}
    assert agg["first_audio_s"]["count"] >= 1
    assert agg["first_audio_s"]["p50"] == pytest.approx(0.2, abs=0.021)
    assert max(row["active"] for row in doc["timeline"]) <= 3
    assert len(doc["timeline"]) == pytest.approx(doc["elapsed_s"], abs=1)
    for row in doc["calls"]:
        report = CallReport.from_json(row)  # every row is a complete report
        assert report.to_json() == row
        assert 0 <= row["started_at"] <= row["ended_at"]
    data = png.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (900, 800)


def test_cli_runs_and_reports_refusals(tmp_path: Path) -> None:
    with socket.socket() as sock:  # bound, not listening: every connect is refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        json_out = tmp_path / "out.json"
        argv = ["loadtest", f"ws://127.0.0.1:{port}", "--calls", "2", "--duration", "0.5"]
        argv += ["--json-out", str(json_out), "--ramp", "8", "--dialect", "asterisk"]
        argv += ["--asterisk-basic-auth", "u:p"]
        assert parse_args(argv).calls == 2
        assert cli_main(argv) == 1  # no call succeeded
    doc = json.loads(json_out.read_text())
    assert doc["aggregate"]["outcomes"] == {"connect_failed": doc["aggregate"]["calls"]}
    assert doc["plan"]["auth"]["basic"] is True and doc["plan"]["dialect"] == "asterisk"
    assert 1 <= doc["aggregate"]["calls"] <= 5


@pytest.mark.parametrize(
    ("url", "dialect", "assistant", "want"),
    [
        ("ws://h:1", None, None, ("ws://h:1", "/twilio/esther", "twilio", "esther")),
        ("ws://h:1/", "asterisk", "bob", ("ws://h:1", "/asterisk/bob", "asterisk", "bob")),
        ("ws://h:1", None, "", ("ws://h:1", "/twilio", "twilio", None)),
        ("ws://h:1/twilio/esther", None, None, ("ws://h:1", "/twilio/esther", "twilio", "esther")),
        ("wss://h/asterisk/ann/", None, "ann", ("wss://h", "/asterisk/ann", "asterisk", "ann")),
        ("ws://h:1/twilio", "twilio", None, ("ws://h:1", "/twilio", "twilio", None)),
        ("wss://h/v/twilio/e", None, None, ("wss://h", "/v/twilio/e", "twilio", "e")),
        ("ws://h:1/twilio/a%20b", None, "a b", ("ws://h:1", "/twilio/a%20b", "twilio", "a b")),
    ],
)  # fmt: skip
def test_resolve_target_accepts_base_and_carrier_urls(
    url: str, dialect: str | None, assistant: str | None, want: tuple[str, str, str, str | None]
) -> None:
    target = resolve_target(url, dialect, assistant)
    assert (target.base, target.path, target.dialect, target.assistant) == want


@pytest.mark.parametrize(
    ("url", "dialect", "assistant", "match"),
    [
        ("ws://h:1/esther", None, None, "ambiguous"),
        ("ws://h:1/voice", None, None, "ambiguous"),
        ("ws://h:1/twilio/esther", "asterisk", None, "dials twilio but --dialect is asterisk"),
        ("ws://h:1/twilio/esther", None, "bob", "names assistant 'esther' but --assistant"),
        ("ws://h:1/twilio", None, "bob", "names no assistant but --assistant"),
        ("http://h:1", None, None, "ws://host"),
        ("ws://h:1/twilio/esther?x=1", None, None, "no query"),
    ],
)
def test_resolve_target_refuses_ambiguous_urls(
    url: str, dialect: str | None, assistant: str | None, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        resolve_target(url, dialect, assistant)


@asynccontextmanager
async def _strict_daemon() -> AsyncIterator[tuple[str, list[str]]]:
    """A WebSocket server that, like the daemon, closes 4100 unless the path is
    ``/twilio/esther``, and otherwise closes normally at once; records every path."""
    paths: list[str] = []

    async def handler(request: WebSocketRequest) -> None:
        paths.append(request.path)
        ws = await request.accept()
        code = 1000 if request.path == "/twilio/esther" else 4100
        await ws.aclose(code, "" if code == 1000 else "no assistant")

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
        yield f"ws://127.0.0.1:{server.port}", paths
        nursery.cancel_scope.cancel()


def _argv(url: str, json_out: Path, *extra: str) -> list[str]:
    return ["loadtest", url, "--calls", "2", "--duration", "0.3", "--ramp", "10",
            "--call-length", "1", "--json-out", str(json_out), *extra]  # fmt: skip


async def test_full_carrier_url_is_dialled_as_given(tmp_path: Path) -> None:
    async with _strict_daemon() as (base, paths):
        args = parse_args(_argv(f"{base}/twilio/esther", tmp_path / "a.json"))
        run = LoadRun(plan_from_args(args))
        await run.run()
        assert paths and set(paths) == {"/twilio/esther"}
        assert all(r.close_code != 4100 for r in run.reports)
        del paths[:]
        args = parse_args(_argv(base, tmp_path / "b.json"))  # the base URL still works
        await LoadRun(plan_from_args(args)).run()
        assert paths and set(paths) == {"/twilio/esther"}


async def test_run_where_every_call_fails_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with _strict_daemon() as (base, paths):
        json_out = tmp_path / "out.json"
        args = parse_args(_argv(base, json_out, "--assistant", "bob"))
        status = await trio.to_thread.run_sync(main, args)
    assert status == 1 and set(paths) == {"/twilio/bob"}
    out = capsys.readouterr().out
    assert f"every call failed ({base}/twilio/bob):" in out
    assert "closed_by_daemon: close 4100 NO_ASSISTANT (no assistant)" in out
    doc = json.loads(json_out.read_text())
    assert set(doc["aggregate"]["close_codes"]) == {"4100"}


def test_failure_summary_counts_each_cause() -> None:
    def report(outcome: str, **kw: object) -> CallReport:
        return CallReport(label="x", dialect="twilio", assistant="a", seed=0,
                          misbehaviour="none", outcome=outcome, started_at=0, ended_at=1,
                          **kw)  # type: ignore[arg-type]  # fmt: skip

    lines = failure_summary(
        [
            report("completed"),
            report("rejected", http_status=404, error="no such assistant"),
            report("closed_by_daemon", close_code=4100),
            report("closed_by_daemon", close_code=4100),
            report("connect_failed", error="OSError: refused"),
        ]
    )
    assert lines == [
        "2 x closed_by_daemon: close 4100 NO_ASSISTANT",
        "1 x rejected: HTTP 404; e.g. no such assistant",
        "1 x connect_failed: no close code; e.g. OSError: refused",
    ]
