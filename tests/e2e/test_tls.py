"""``wss://`` served by the daemon itself, and SIGHUP reloading its certificate (finding 6 of
issue 9): whole calls over TLS on 127.0.0.1, in process and as real processes (one, and a
parent with two workers), with certificates from two trustme CAs."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import attrs
import pytest
import trio
from trio_websocket import ConnectionClosed, connect_websocket_url, open_websocket_url

from devkit.emulator.server import Emulator
from devkit.local_s3 import LocalS3
from devkit.simcall import CallScript, run_simulated_call
from sessions.serve import Daemon, open_daemon
from tests.certs import Issued, install, presented_fingerprint, trusting, write_atomically
from tests.daemon.fakes import TwilioPeer
from tests.e2e.conftest import daemon_overrides, daemon_settings
from tests.e2e.test_serve_process import ServeProcess, close_code, serve_process

FRAME = b"\xff" * 160
MAX_CALLS_TO_SPREAD = 20


@attrs.frozen
class Files:
    cert: Path
    key: Path

    @property
    def env(self) -> dict[str, str]:
        return {"NOVAVOICE_TLS_CERT": str(self.cert), "NOVAVOICE_TLS_KEY": str(self.key)}


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path / "tls.crt", tmp_path / "tls.key")


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def reloads(daemon: Daemon, outcome: str) -> float:
    value = daemon.metrics.registry.get_sample_value(
        "novavoice_tls_reloads_total", {"outcome": outcome}
    )
    return value or 0.0


async def test_a_wss_call_runs_end_to_end_and_plain_ws_is_not_served(
    emulator: Emulator, local_s3: LocalS3, files: Files
) -> None:
    issued = Issued.new()
    install(issued, files.cert, files.key)
    settings = daemon_settings(tls={"cert_path": str(files.cert), "key_path": str(files.key)})
    script = CallScript(length=None, max_turns=1, utterance_seconds=(0.6, 0.6))
    with trio.fail_after(30):
        async with open_daemon(settings, daemon_overrides(emulator, local_s3)) as daemon:
            assert daemon.url.startswith("wss://127.0.0.1:")
            report = await run_simulated_call(
                daemon.url, assistant="esther", script=script, ssl_context=issued.client_context()
            )
            assert report.outcome == "completed", report
            assert report.responses == 1 and report.frames_received > 0
            assert report.close_code == 1000
            # A carrier speaking plain ws:// to the TLS port gets no WebSocket at all.
            plain = await run_simulated_call(
                daemon.url.replace("wss://", "ws://"), assistant="esther", connect_timeout=3.0
            )
            assert plain.outcome != "completed" and plain.frames_received == 0
            await daemon.supervisor.wait_active_calls(lambda n: n == 0)


async def test_reload_during_a_call_new_handshakes_get_the_new_certificate(
    emulator: Emulator, local_s3: LocalS3, files: Files, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="novavoice.supervisor")
    old, new = Issued.new(), Issued.new()
    install(old, files.cert, files.key)
    settings = daemon_settings(tls={"cert_path": str(files.cert), "key_path": str(files.key)})
    with trio.fail_after(30):
        async with open_daemon(settings, daemon_overrides(emulator, local_s3)) as daemon:
            url = daemon.url + "/twilio/esther"
            async with open_websocket_url(url, ssl_context=old.client_context()) as first:
                peer = TwilioPeer(first, stream_sid="MZ01", call_sid="CA01")
                await peer.start()
                for _ in range(10):
                    await peer.media(FRAME)
                await daemon.supervisor.wait_active_calls(lambda n: n == 1)

                install(new, files.cert, files.key)
                assert daemon.tls is not None and daemon.tls.reload()
                port = port_of(daemon.url)
                assert await presented_fingerprint(port, trusting(old, new)) == new.fingerprint
                # A second call, set up after the reload: only the new CA's clients get in.
                # (trio-websocket's client waits forever when its TLS handshake fails, so
                # the refusal is seen with a bare TLS client.)
                with pytest.raises(trio.BrokenResourceError):
                    await presented_fingerprint(port, old.client_context())
                async with open_websocket_url(url, ssl_context=new.client_context()) as second:
                    other = TwilioPeer(second, stream_sid="MZ02", call_sid="CA02")
                    await other.start()
                    await other.media(FRAME)
                    await other.stop()
                    assert await close_code(second) == 1000

                # The first call was never interrupted: more audio, then a normal hang-up.
                for _ in range(10):
                    await peer.media(FRAME)
                await peer.stop()
                assert await close_code(first) == 1000
            await daemon.supervisor.wait_active_calls(lambda n: n == 0)
            assert reloads(daemon, "ok") == 1

            # A broken rotation (certificate replaced, key not yet) keeps the new certificate.
            write_atomically(files.cert, old.chain_pem)
            assert not daemon.tls.reload()
            assert reloads(daemon, "failed") == 1
            assert await presented_fingerprint(port, new.client_context()) == new.fingerprint
    ends = [r.__dict__ for r in caplog.records if getattr(r, "event", None) == "call_ended"]
    # The second call ended first; the first carried all 20 frames, before and after.
    assert [(e["reason"], e["frames_in"]) for e in ends] == [("hangup", 1), ("hangup", 20)]


async def test_sighup_reloads_the_certificate_of_a_serve_process(
    emulator: Emulator, local_s3: LocalS3, files: Files
) -> None:
    old, new = Issued.new(), Issued.new()
    install(old, files.cert, files.key)
    with trio.fail_after(60):
        async with serve_process(emulator, local_s3, **files.env) as served:
            listening = await served.wait_for("listening")
            assert listening["url"].startswith("wss://")
            assert listening["tls_fingerprint"] == old.fingerprint
            url, port = listening["url"], port_of(listening["url"])
            async with open_websocket_url(
                url + "/twilio/esther", ssl_context=old.client_context()
            ) as ws:
                peer = TwilioPeer(ws)
                await peer.start()
                await peer.media(FRAME)
                # A half-finished rotation: logged, counted, the old certificate stays.
                write_atomically(files.key, b"not a key\n")
                served.process.send_signal(signal.SIGHUP)
                failed = await served.wait_for("tls_reload_failed")
                assert failed["level"] == "error" and failed["fingerprint"] == old.fingerprint
                assert await presented_fingerprint(port, trusting(old, new)) == old.fingerprint
                install(new, files.cert, files.key)
                served.process.send_signal(signal.SIGHUP)
                await served.wait_for("tls_reloaded", fingerprint=new.fingerprint)
                assert await presented_fingerprint(port, trusting(old, new)) == new.fingerprint
                await peer.media(FRAME)
                await peer.stop()
                assert await close_code(ws) == 1000
            served.process.send_signal(signal.SIGTERM)
            assert await served.process.wait() == 0
            call_end = await served.wait_for("call_ended")
            assert (call_end["reason"], call_end["frames_in"]) == ("hangup", 2)
    assert not served.raw


async def place_call(
    nursery: trio.Nursery, served: ServeProcess, url: str, n: int, issued: Issued
) -> tuple[TwilioPeer, int]:
    """Start a call trusting only ``issued``'s CA; the peer and the worker that took it."""
    sid = f"CA{n:030d}"
    ws = await connect_websocket_url(
        nursery, url + "/twilio/esther", ssl_context=issued.client_context()
    )
    peer = TwilioPeer(ws, stream_sid=f"MZ{n:030d}", call_sid=sid)
    await peer.start()
    await peer.media(FRAME)
    line = await served.wait_until(lambda line: line.get("call_id") == sid and "worker" in line)
    return peer, int(line["worker"])


async def calls_on_both_workers(
    nursery: trio.Nursery, served: ServeProcess, url: str, issued: Issued, first: int
) -> list[TwilioPeer]:
    """Place calls, kept running, until both workers took one over TLS with ``issued``."""
    peers: list[TwilioPeer] = []
    workers: set[int] = set()
    while workers != {0, 1}:
        assert len(peers) < MAX_CALLS_TO_SPREAD, "every call went to the same worker"
        peer, worker = await place_call(nursery, served, url, first + len(peers), issued)
        peers.append(peer)
        workers.add(worker)
    return peers


async def test_every_worker_serves_tls_and_reloads_it_on_sighup(
    emulator: Emulator, local_s3: LocalS3, files: Files
) -> None:
    old, new = Issued.new(), Issued.new()
    install(old, files.cert, files.key)
    with trio.fail_after(90):
        async with serve_process(emulator, local_s3, "--workers", "2", **files.env) as served:
            listening = await served.wait_for("listening", workers=2)
            url = listening["url"]
            assert url.startswith("wss://")
            for worker in (0, 1):
                line = await served.wait_for("listening", worker=worker)
                assert line["tls_fingerprint"] == old.fingerprint
            async with trio.open_nursery() as nursery:
                before = await calls_on_both_workers(nursery, served, url, old, 0)
                install(new, files.cert, files.key)
                served.process.send_signal(signal.SIGHUP)  # the parent forwards it
                for worker in (0, 1):
                    await served.wait_for("tls_reloaded", worker=worker)
                after = await calls_on_both_workers(nursery, served, url, new, len(before))
                # Calls from before the reload, on both workers, still carry audio and end
                # normally.
                for peer in before + after:
                    await peer.media(FRAME)
                    await peer.stop()
                    try:
                        while True:
                            await peer.ws.get_message()
                    except ConnectionClosed as closed:
                        assert closed.reason is not None and closed.reason.code == 1000
            served.process.send_signal(signal.SIGTERM)
            assert await served.process.wait() == 0
    ends = [line for line in served.lines if line.get("event") == "call_ended"]
    assert len(ends) == len(before) + len(after)
    assert all(line["reason"] == "hangup" and line["frames_in"] == 2 for line in ends)


def serve_exits(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``novavoice serve`` that must fail at start-up (nothing reaches AWS: it never starts)."""
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "AWS_REGION": "us-east-1",
        "NOVAVOICE_LISTEN": "127.0.0.1:0",
        "NOVAVOICE_ADMIN_LISTEN": "127.0.0.1:0",
        **env,
    }
    command = [sys.executable, "-m", "sessions.cli", "serve", *args]
    return subprocess.run(
        command, env=environment, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_refuses_one_file_without_the_other(files: Files, workers: str) -> None:
    install(Issued.new(), files.cert, files.key)
    result = serve_exits("--workers", workers, NOVAVOICE_TLS_CERT=str(files.cert))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "novavoice: configuration error: NOVAVOICE_TLS_CERT is set but NOVAVOICE_TLS_KEY is "
        "not: set NOVAVOICE_TLS_CERT and NOVAVOICE_TLS_KEY together (or neither)"
    )
    assert '"listening"' not in result.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_refuses_a_key_that_does_not_match(files: Files, workers: str) -> None:
    one, other = Issued.new(), Issued.new()
    install(one, files.cert, files.key)
    write_atomically(files.key, other.key_pem)
    result = serve_exits("--workers", workers, **files.env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"novavoice: configuration error: NOVAVOICE_TLS_CERT={files.cert}, "
        f"NOVAVOICE_TLS_KEY={files.key}: the private key does not match the certificate"
    )
    assert '"listening"' not in result.stderr
