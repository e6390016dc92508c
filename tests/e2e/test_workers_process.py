"""``novavoice serve --workers 2`` as real processes: spread, crash and restart, drain.

The parent and its two workers run as an operator would run them (configured through the
environment, talking to the emulator and moto's S3 server). Which worker took a call is
read from the daemon's own log: every worker's lines carry ``worker`` and ``pid``.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import attrs
import trio
from prometheus_client.parser import text_string_to_metric_families
from trio_websocket import ConnectionClosed, WebSocketConnection, connect_websocket_url

from devkit.emulator.server import Emulator
from devkit.local_s3 import LocalS3
from tests.daemon.fakes import TwilioPeer
from tests.e2e.test_admission import http_get
from tests.e2e.test_serve_process import ServeProcess, serve_process

FRAME = b"\xff" * 160
MAX_CALLS_TO_SPREAD = 20


@attrs.define(eq=False)
class Call:
    """One simulated Twilio call and what the daemon did with it."""

    sid: str
    ws: WebSocketConnection
    peer: TwilioPeer
    worker: int = -1
    frames_sent: int = 0
    close_code: int | None = None
    closed: trio.Event = attrs.field(factory=trio.Event)

    async def receive(self) -> None:
        try:
            while True:
                await self.ws.get_message()
        except ConnectionClosed as exc:
            self.close_code = exc.reason.code if exc.reason is not None else None
        self.closed.set()

    async def send_frames(self, n: int) -> None:
        for _ in range(n):
            await self.peer.media(FRAME)
            self.frames_sent += 1


async def place_call(nursery: trio.Nursery, served: ServeProcess, url: str, n: int) -> Call:
    """Start a call and learn which worker took it (from its log lines)."""
    sid = f"CA{n:030d}"
    ws = await connect_websocket_url(nursery, url + "/twilio/esther")
    call = Call(sid, ws, TwilioPeer(ws, stream_sid=f"MZ{n:030d}", call_sid=sid))
    nursery.start_soon(call.receive)
    await call.peer.start()
    await call.send_frames(5)
    line = await served.wait_until(lambda line: line.get("call_id") == sid and "worker" in line)
    call.worker = int(line["worker"])
    return call


async def spread_calls(nursery: trio.Nursery, served: ServeProcess, url: str) -> list[Call]:
    """Place calls, kept running, until both workers hold at least one."""
    calls: list[Call] = []
    while {c.worker for c in calls} != {0, 1}:
        assert len(calls) < MAX_CALLS_TO_SPREAD, "every call went to the same worker"
        calls.append(await place_call(nursery, served, url, len(calls)))
    return calls


async def wait_ready(admin: str) -> None:
    """Poll the parent's ``/readyz`` (another process: nothing to wait on but time)."""
    while True:
        if (await http_get(admin + "/readyz"))[0] == 200:
            return
        await trio.sleep(0.1)


async def scrape(admin: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = await http_get(admin + "/metrics")
    assert status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def active_calls(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
    return sum(v for (name, _), v in samples.items() if name == "novavoice_calls_active")


async def worker_pids(served: ServeProcess) -> dict[int, int]:
    lines: dict[int, int] = {}
    for worker in (0, 1):
        line = await served.wait_for("listening", worker=worker)
        lines[worker] = int(line["pid"])
    return lines


async def test_calls_spread_and_a_killed_worker_restarts_while_the_other_carries_on(
    emulator: Emulator, local_s3: LocalS3
) -> None:
    with trio.fail_after(60):
        async with serve_process(emulator, local_s3, "--workers", "2") as served:
            async with trio.open_nursery() as nursery:
                listening = await served.wait_for("listening", workers=2)
                url, admin = listening["url"], listening["admin_url"]
                pids = await worker_pids(served)
                await wait_ready(admin)
                calls = await spread_calls(nursery, served, url)
                samples = await scrape(admin)
                assert active_calls(samples) == len(calls)  # /metrics adds both workers up
                assert samples["novavoice_workers_configured", ()] == 2
                assert samples["novavoice_workers_healthy", ()] == 2

                victim, survivor = calls[0].worker, 1 - calls[0].worker
                os.kill(pids[victim], signal.SIGKILL)
                crashed = await served.wait_for("worker_crashed", worker=victim)
                assert crashed["exit_code"] == -signal.SIGKILL
                # The survivor's calls carry on: more audio, then a normal hang-up.
                surviving = [c for c in calls if c.worker == survivor]
                for call in surviving:
                    await call.send_frames(10)
                    await call.peer.stop()
                for call in surviving:
                    await call.closed.wait()
                    assert call.close_code == 1000
                    end = await served.wait_for("call_ended", call_id=call.sid)
                    assert (end["worker"], end["reason"]) == (survivor, "hangup")
                    assert end["frames_in"] == call.frames_sent == 15
                for call in calls:
                    if call.worker == victim:
                        await call.closed.wait()  # dropped with its process
                # The victim's slot is restarted: a new process, healthy again.
                await served.wait_until(
                    lambda line: (
                        line.get("event") == "listening"
                        and line.get("worker") == victim
                        and line.get("pid") != pids[victim]
                    )
                )
                while True:  # the parent probes its workers once a second
                    if (await scrape(admin))["novavoice_workers_healthy", ()] == 2:
                        break
                    await trio.sleep(0.2)
                assert (await scrape(admin))["novavoice_worker_restarts_total", ()] == 1
                nursery.cancel_scope.cancel()
            served.process.send_signal(signal.SIGTERM)
            assert await served.process.wait() == 0
            assert served.raw == []


async def test_sigterm_drains_both_workers_and_ends_calls_politely_at_the_deadline(
    emulator: Emulator, local_s3: LocalS3, tmp_path: Path
) -> None:
    emf = tmp_path / "emf.log"
    env = {
        "DRAIN_TIMEOUT_MS": "1500",
        "METRICS_CLOUDWATCH_EMF": "1",
        "METRICS_CLOUDWATCH_EMF_PATH": str(emf),
    }
    with trio.fail_after(60):
        async with (
            serve_process(emulator, local_s3, "--workers", "2", **env) as served,
            trio.open_nursery() as nursery,
        ):
            listening = await served.wait_for("listening", workers=2)
            url, admin = listening["url"], listening["admin_url"]
            await worker_pids(served)
            await wait_ready(admin)
            calls = await spread_calls(nursery, served, url)
            served.process.send_signal(signal.SIGTERM)
            for worker in (0, 1):
                await served.wait_for("draining", worker=worker)
            status, body = await http_get(admin + "/readyz")
            assert (status, body) == (503, b"not ready: draining\n")
            for call in calls:
                await call.closed.wait()
                assert call.close_code == 1001
            code = await served.process.wait()
            exits = [
                line
                for line in served.lines
                if line.get("event") in ("worker_exited", "worker_killed", "worker_crashed")
            ]
            assert code == 0, (exits, "\n".join(served.raw))
            ends: list[dict[str, Any]] = [
                await served.wait_for("call_ended", call_id=c.sid) for c in calls
            ]
            assert {e["reason"] for e in ends} == {"shutdown"}
            assert {e["worker"] for e in ends} == {0, 1}
            for worker in (0, 1):
                await served.wait_for("stopped", worker=worker)
            assert served.raw == []
            nursery.cancel_scope.cancel()
        # Each worker wrote its last set of EMF lines as it stopped (the interval is 60 s).
        docs = [json.loads(line) for line in emf.read_text().splitlines()]
        assert len({d["pid"] for d in docs}) == 2
        ended = sum(d["CallsEnded"] for d in docs if d.get("Outcome") == "shutdown")
        assert ended == len(calls)


async def test_sighup_reaches_every_worker_which_reopens_its_call_log(
    emulator: Emulator, local_s3: LocalS3, tmp_path: Path
) -> None:
    # Finding 13 of issue 9, with --workers: logrotate signals the parent, which forwards it.
    path = tmp_path / "calls.jsonl"
    with trio.fail_after(60):
        async with serve_process(
            emulator, local_s3, "--workers", "2", CALL_LOG_PATH=str(path)
        ) as served:
            listening = await served.wait_for("listening", workers=2)
            await worker_pids(served)
            await wait_ready(listening["admin_url"])
            path.rename(tmp_path / "calls.jsonl.1")
            served.process.send_signal(signal.SIGHUP)
            for worker in (0, 1):
                await served.wait_for("call_log_reopen", worker=worker)
            served.process.send_signal(signal.SIGTERM)
            assert await served.process.wait() == 0
    assert path.stat().st_mode & 0o777 == 0o600
    assert not any(line.get("event") == "worker_crashed" for line in served.lines)
