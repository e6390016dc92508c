"""`novavoice emulator` as a process: one JSON line once listening, clean exit on SIGTERM."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from actors.errors import ConfigError
from devkit.emulator.cli import add_arguments, build_config


def test_cli_prints_listening_line_and_serves_tls_h2() -> None:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "AKIDCLI", "AWS_SECRET_ACCESS_KEY": "secret"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sessions.cli", "emulator", "--listen", "127.0.0.1:0",
         "--session-limit", "5"],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = json.loads(proc.stdout.readline())
        assert line["event"] == "listening"
        url = urlsplit(line["url"])
        assert url.scheme == "https" and url.hostname == "127.0.0.1" and url.port
        ca_file = Path(line["ca_file"])
        assert ca_file.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
        # The printed CA really is the server's: a TLS handshake with ALPN h2 succeeds.
        ctx = ssl.create_default_context(cafile=str(ca_file))
        ctx.set_alpn_protocols(["h2"])
        with (
            socket.create_connection((url.hostname, url.port), timeout=10) as raw,
            ctx.wrap_socket(raw, server_hostname=url.hostname) as tls,
        ):
            assert tls.selected_alpn_protocol() == "h2"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert not ca_file.exists()  # the temporary CA is removed on exit
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_flags_build_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    args = parse(
        "--access-key-id", "A", "--secret-access-key", "S", "--session-limit", "2",
        "--idle-timeout", "0", "--throttle-open-ordinals", "2,5", "--stream-fault",
        "3:rst-after=1.5,stall-after=4", "--max-concurrent-streams", "7",
    )  # fmt: skip
    cfg = build_config(args)
    assert cfg.credentials == {"A": "S"}
    assert cfg.plan.session_limit == 2 and cfg.plan.idle_timeout is None
    assert cfg.throttle_open_ordinals == {2, 5}
    assert cfg.plan_for(3).rst_after == 1.5 and cfg.plan_for(3).stall_after == 4
    assert cfg.plan_for(1).rst_after is None
    assert cfg.max_concurrent_streams == 7


def test_missing_credentials_or_bad_fault_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    with pytest.raises(ConfigError, match="no credentials"):
        build_config(parse())
    with pytest.raises(ConfigError, match="unknown stream plan keys"):
        build_config(parse("--access-key-id", "A", "--secret-access-key", "S",
                           "--stream-fault", "1:explode-after=1"))  # fmt: skip
