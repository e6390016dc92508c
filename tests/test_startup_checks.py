"""Start-up refusals (sessions/startup_checks.py): each names the carrier and the variable."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from actors.errors import ConfigError
from sessions.config import Settings, settings_from_mapping
from sessions.serve import check_listen_security
from sessions.startup_checks import is_loopback, startup_problems

TOKEN = "0123456789abcdef0123456789abcdef"
PUBLIC = "wss://voice.example.com"
TWILIO = {"TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_PUBLIC_URL": PUBLIC}
ASTERISK = {"ASTERISK_BASIC_AUTH": "asterisk:s3cret-pass"}


def settings(env: dict[str, str], listen: str = "0.0.0.0:8080") -> Settings:
    return settings_from_mapping({"NOVAVOICE_LISTEN": listen, **env})


def test_twilio_credentials_alone_do_not_cover_asterisk_beyond_loopback() -> None:
    """Finding 1 of issue 9: any carrier's credentials passed the public-listener check,
    leaving /asterisk/ open with only TWILIO_AUTH_TOKEN set."""
    with pytest.raises(ConfigError, match="carrier asterisk") as info:
        check_listen_security("0.0.0.0", settings(TWILIO), insecure=False)
    assert "ASTERISK_BASIC_AUTH" in str(info.value)
    with pytest.raises(ConfigError, match=r"carrier twilio.*TWILIO_AUTH_TOKEN"):
        check_listen_security("0.0.0.0", settings(ASTERISK), insecure=False)


def test_every_enabled_carrier_configured_starts() -> None:
    assert startup_problems(settings({**TWILIO, **ASTERISK})) == []
    assert startup_problems(settings({**TWILIO, "CARRIERS": "twilio"})) == []
    assert startup_problems(settings({**ASTERISK, "CARRIERS": "asterisk"})) == []
    bearer = {"ASTERISK_BEARER_TOKEN": "a-long-bearer-token", "CARRIERS": "asterisk"}
    assert startup_problems(settings(bearer)) == []


def test_no_credentials_beyond_loopback_names_every_carrier() -> None:
    problems = startup_problems(settings({}))
    assert len(problems) == 2
    assert "carrier twilio" in problems[0] and "TWILIO_PUBLIC_URL" in problems[0]
    assert "carrier asterisk" in problems[1] and "ASTERISK_BASIC_AUTH" in problems[1]


def test_loopback_and_insecure_waive_the_carrier_requirement() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert is_loopback(host)
        assert (
            startup_problems(
                settings({}, listen=f"[{host}]:8080" if ":" in host else f"{host}:8080")
            )
            == []
        )
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1") and not is_loopback("::")
    assert startup_problems(settings({}), insecure=True) == []
    check_listen_security("0.0.0.0", settings({}), insecure=True)


def test_token_without_public_url_is_refused_even_on_loopback_and_insecure() -> None:
    only_token = settings({"TWILIO_AUTH_TOKEN": TOKEN}, listen="127.0.0.1:8080")
    problems = startup_problems(only_token, insecure=True)
    assert len(problems) == 1 and problems[0].startswith(
        "TWILIO_AUTH_TOKEN is set but TWILIO_PUBLIC_URL"
    )
    only_url = settings({"TWILIO_PUBLIC_URL": PUBLIC}, listen="127.0.0.1:8080")
    problems = startup_problems(only_url, insecure=True)
    assert len(problems) == 1 and problems[0].startswith(
        "TWILIO_PUBLIC_URL is set but TWILIO_AUTH_TOKEN"
    )


@pytest.mark.parametrize(
    "url", ["https://voice.example.com", "ws://voice.example.com", "wss://", "wss://h/x?y=1"]
)
def test_a_public_url_that_is_not_wss_is_refused(url: str) -> None:
    """Finding 4 of issue 9: https:// and ws:// public URLs were accepted at start-up."""
    with pytest.raises(ConfigError, match="TWILIO_PUBLIC_URL"):
        settings({"TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_PUBLIC_URL": url})
    # Settings built in code (not parsed) are caught by the start-up check.
    built = Settings().replace(admission={"twilio_auth_tokens": (TOKEN,), "twilio_public_url": url})
    problems = startup_problems(built, insecure=True)
    assert any(p.startswith("TWILIO_PUBLIC_URL") for p in problems)


def test_public_url_may_carry_a_port_and_a_prefix() -> None:
    for url in ("wss://voice.example.com:8443", "wss://voice.example.com/novavoice/"):
        s = settings({**TWILIO, "TWILIO_PUBLIC_URL": url, "CARRIERS": "twilio"})
        assert startup_problems(s) == []
        assert s.admission.twilio_public_url == url.rstrip("/")


@pytest.mark.parametrize(
    ("raw", "match"),
    [("twilio,sip", "CARRIERS"), (",", "CARRIERS"), ("short", "TWILIO_AUTH_TOKEN")],
)
def test_bad_lists_fail_naming_the_variable(raw: str, match: str) -> None:
    env = {"CARRIERS": raw} if match == "CARRIERS" else {"TWILIO_AUTH_TOKEN": f"{TOKEN},{raw}"}
    with pytest.raises(ConfigError, match=match):
        settings_from_mapping(env)


def _serve(tmp_path: Path, env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "ASTERISK_"))}
    clean.pop("CARRIERS", None)
    return subprocess.run(
        [sys.executable, "-m", "sessions.cli", "serve", *argv],
        capture_output=True,
        text=True,
        env={**clean, **env},
        cwd=tmp_path,  # no .env here
        timeout=60,
    )


def test_serve_refuses_before_binding_and_names_the_carrier(tmp_path: Path) -> None:
    # Refused before any socket is bound, so this never listens beyond loopback.
    result = _serve(tmp_path, TWILIO, "--listen", "0.0.0.0:0")
    assert result.returncode != 0
    assert "carrier asterisk" in result.stderr and "ASTERISK_BASIC_AUTH" in result.stderr
    assert '"listening"' not in result.stdout + result.stderr
    # --insecure waives the carrier requirement, not a half-configured Twilio.
    result = _serve(tmp_path, {"TWILIO_AUTH_TOKEN": TOKEN}, "--listen", "0.0.0.0:0", "--insecure")
    assert result.returncode != 0
    assert "TWILIO_PUBLIC_URL" in result.stderr
    assert '"listening"' not in result.stdout + result.stderr


def test_serve_passes_insecure_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """With --insecure the start-up check lets an unauthenticated public listener through
    and the daemon is started with it (trio.run is intercepted: nothing binds)."""
    from sessions import cli, serve

    monkeypatch.setattr(serve, "load_settings", lambda: settings_from_mapping({}))
    ran: list[object] = []
    monkeypatch.setattr(trio, "run", lambda fn: ran.append(fn))
    args = cli.parse_args(["serve", "--listen", "0.0.0.0:0", "--insecure"])
    assert serve.main(args) == 0
    [fn] = ran
    assert isinstance(fn, functools.partial) and fn.keywords == {"insecure": True}
    args = cli.parse_args(["serve", "--listen", "0.0.0.0:0"])
    with pytest.raises(ConfigError, match="carrier twilio"):
        serve.main(args)
    assert len(ran) == 1
