"""The prompt admin's own configuration: who may publish, where it audits, whom it notifies.

Read from the environment (and ``.env``) next to the daemon's variables, which give the
bucket, prefix, region and size limit (:mod:`sessions.config`). A bad value fails at start-up
with a one-line :class:`~actors.errors.ConfigError` naming the variable.

- ``ADMIN_TOKENS``: ``name:token,name2:token2``. Each name is the identity recorded as the
  author of its writes; each token is a secret of 16 characters at least.
- ``ADMIN_AUDIT_LOG``: the append-only audit log (JSON lines), default
  ``novavoice-admin-audit.log`` in the working directory.
- ``NOVAVOICE_DAEMONS``: comma-separated base URLs of the daemons' admin ports
  (``http://10.0.0.5:9090``), each told to refresh an assistant after a publish or rollback.
- ``DAEMON_ADMIN_TOKEN``: the bearer token those daemons expect (the daemon reads the same
  variable).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import attrs
from dotenv import dotenv_values

from actors.errors import ConfigError

T = TypeVar("T")

MIN_TOKEN_CHARS = 16
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


@attrs.frozen(kw_only=True)
class AdminSettings:
    """Everything the admin process is configured with beyond the prompts bucket."""

    tokens: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    """Admin name → token (``ADMIN_TOKENS``)."""
    audit_log: Path = Path("novavoice-admin-audit.log")
    """Append-only JSON-lines audit log (``ADMIN_AUDIT_LOG``)."""
    daemons: tuple[str, ...] = ()
    """Base URLs of the daemons' admin ports to refresh (``NOVAVOICE_DAEMONS``)."""
    daemon_token: str | None = attrs.field(default=None, repr=False)
    """Bearer token for the daemons' refresh route (``DAEMON_ADMIN_TOKEN``)."""


def _tokens(raw: str) -> dict[str, str]:
    tokens: dict[str, str] = {}
    for pair in raw.split(","):
        name, sep, token = pair.strip().partition(":")
        if not sep or not _NAME_RE.match(name):
            raise ValueError("must be name:token pairs separated by commas")
        if len(token) < MIN_TOKEN_CHARS:
            raise ValueError(f"the token of {name!r} is shorter than {MIN_TOKEN_CHARS} characters")
        if name in tokens:
            raise ValueError(f"{name!r} appears twice")
        if token in tokens.values():
            raise ValueError(f"the token of {name!r} is also another admin's")
        tokens[name] = token
    return tokens


def _daemons(raw: str) -> tuple[str, ...]:
    urls = tuple(u.strip().rstrip("/") for u in raw.split(",") if u.strip())
    for url in urls:
        if not re.match(r"^https?://[^/\s]+$", url):
            raise ValueError(f"{url!r} is not a base URL like http://host:9090")
    return urls


def _secret(raw: str) -> str:
    if len(raw) < 8:
        raise ValueError("is too short to be a secret (8 characters at least)")
    return raw


def _read(env: Mapping[str, str], name: str, parse: Callable[[str], T], default: T) -> T:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return parse(raw.strip())
    except ValueError as exc:
        # Never echo the value: it may hold secrets.
        raise ConfigError(f"{name}: {exc}") from None


def admin_settings_from_mapping(env: Mapping[str, str]) -> AdminSettings:
    """Build :class:`AdminSettings` from a mapping of variables."""
    d = AdminSettings()
    return AdminSettings(
        tokens=_read(env, "ADMIN_TOKENS", _tokens, d.tokens),
        audit_log=_read(env, "ADMIN_AUDIT_LOG", Path, d.audit_log),
        daemons=_read(env, "NOVAVOICE_DAEMONS", _daemons, d.daemons),
        daemon_token=_read(env, "DAEMON_ADMIN_TOKEN", _secret, d.daemon_token),
    )


def load_admin_settings(
    environ: Mapping[str, str] | None = None, dotenv_path: str | Path | None = ".env"
) -> AdminSettings:
    """Read :class:`AdminSettings` from ``.env`` (if present) overlaid by the environment."""
    merged: dict[str, str] = {}
    if dotenv_path is not None and Path(dotenv_path).is_file():
        merged.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
    merged.update(os.environ if environ is None else environ)
    return admin_settings_from_mapping(merged)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def check_fail_closed(host: str, settings: AdminSettings) -> None:
    """Refuse to listen beyond loopback without admin tokens (one line naming the variable)."""
    if not settings.tokens and not is_loopback(host):
        raise ConfigError(
            f"ADMIN_TOKENS is not set: refusing to serve the prompt admin on {host} beyond "
            "loopback without admin tokens (name:token,name2:token2)"
        )
