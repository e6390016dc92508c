"""Parsers for configuration values: text from the environment in, a typed value out.

Each parser raises :class:`ValueError` with a short reason; :func:`sessions.config.load_settings`
turns it into one :class:`~actors.errors.ConfigError` line naming the variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from urllib.parse import urlsplit

from actors.assistant_names import AssistantName, validate_assistant_name
from actors.errors import InvalidAssistantName
from actors.fallback_audio import is_clip_name
from actors.sonic.events import ENDPOINTING_SENSITIVITIES, VOICES
from sessions.dialects.asterisk import MarksMode

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def milliseconds(raw: str) -> float:
    """A non-negative whole number of milliseconds, as seconds."""
    value = int(raw)
    if value < 0:
        raise ValueError("must not be negative")
    return value / 1000.0


def positive_milliseconds(raw: str) -> float:
    """A positive whole number of milliseconds, as seconds."""
    value = milliseconds(raw)
    if value <= 0:
        raise ValueError("must be a positive number of milliseconds")
    return value


def positive_int(raw: str) -> int:
    """A positive integer."""
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def int_between(low: int, high: int) -> Callable[[str], int]:
    """A parser for an integer in ``[low, high]``."""

    def parse(raw: str) -> int:
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(f"must be an integer from {low} to {high}")
        return value

    return parse


def fraction(raw: str) -> float:
    """A number from 0 to 1 (``top_p``, ``temperature``)."""
    value = float(raw)
    if not 0.0 <= value <= 1.0:
        raise ValueError("must be a number from 0 to 1")
    return value


def bucket(raw: str) -> str:
    """An S3 bucket name."""
    if not _BUCKET_RE.match(raw) or ".." in raw:
        raise ValueError("is not a valid S3 bucket name")
    return raw


def key_prefix(raw: str) -> str:
    """A relative S3 key prefix ending in ``/`` (or empty)."""
    if raw.startswith("/") or "\\" in raw or ".." in raw.split("/"):
        raise ValueError("must be a relative key prefix without '..' or backslashes")
    if raw and not raw.endswith("/"):
        raise ValueError("must end with '/'")
    return raw


def region(raw: str) -> str:
    """An AWS region name."""
    if not _REGION_RE.match(raw):
        raise ValueError("is not an AWS region name (for example us-east-1)")
    return raw


def model_id(raw: str) -> str:
    """A Bedrock model id (no whitespace, no slash)."""
    if not raw or any(c.isspace() for c in raw) or "/" in raw:
        raise ValueError("is not a Bedrock model id")
    return raw


def host_port(raw: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) → ``(host, port)``; port 0 is allowed."""
    host, sep, port_text = raw.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError("must be HOST:PORT")
    port = int(port_text)
    if port > 65535:
        raise ValueError("port must be 0-65535")
    return host.strip("[]"), port


def voice(raw: str) -> str:
    """A Nova Sonic voice id."""
    if raw not in VOICES:
        raise ValueError(f"is not a Nova Sonic voice ({', '.join(sorted(VOICES))})")
    return raw


def endpointing(raw: str) -> str:
    """A turn-detection sensitivity: HIGH, MEDIUM or LOW."""
    if raw not in ENDPOINTING_SENSITIVITIES:
        raise ValueError("must be HIGH, MEDIUM or LOW")
    return raw


def asterisk_marks(raw: str) -> MarksMode:
    """Whether Asterisk gets ``MARK_MEDIA``: auto, on or off."""
    try:
        return MarksMode(raw.lower())
    except ValueError:
        raise ValueError("must be auto, on or off") from None


def assistant(raw: str) -> AssistantName:
    """An assistant name that follows the naming rule."""
    try:
        return validate_assistant_name(raw)
    except InvalidAssistantName as exc:
        raise ValueError(str(exc)) from None


def basic_auth(raw: str) -> tuple[str, str]:
    """``user:password``."""
    user, sep, password = raw.partition(":")
    if not sep or not user or not password:
        raise ValueError("must be user:password")
    return user, password


def secret(raw: str) -> str:
    """A shared secret of 8 characters at least."""
    if len(raw) < 8:
        raise ValueError("is too short to be a secret (8 characters at least)")
    return raw


def secret_list(raw: str) -> tuple[str, ...]:
    """A comma-separated list of shared secrets (8 characters at least each), for rotation."""
    items = tuple(dict.fromkeys(part.strip() for part in raw.split(",")))
    if not all(items):
        raise ValueError("has an empty item in its comma-separated list")
    return tuple(secret(item) for item in items)


KNOWN_CARRIERS = ("twilio", "asterisk")


def carriers(raw: str) -> tuple[str, ...]:
    """A comma-separated list of carriers to serve, among :data:`KNOWN_CARRIERS`."""
    items = tuple(dict.fromkeys(part.strip().lower() for part in raw.split(",")))
    unknown = [item for item in items if item not in KNOWN_CARRIERS]
    if unknown or not items:
        raise ValueError(f"must be a comma list of {', '.join(KNOWN_CARRIERS)}")
    return items


def public_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be the ``wss://`` URL Twilio signs, else ``None``.

    Twilio connects Media Streams over ``wss`` only, and a ``<Stream>`` URL carries no
    query string (Twilio error 31920), so neither may appear in the signed base URL.
    """
    parts = urlsplit(url)
    if parts.scheme != "wss":
        return f"must be a wss:// URL (Twilio connects Media Streams over wss only), not {url!r}"
    if not parts.hostname:
        return "has no host"
    if parts.query or parts.fragment or "?" in url or "#" in url:
        return "must not carry a query string or fragment"
    return None


def public_url(raw: str) -> str:
    """The public ``wss://host[:port][/prefix]`` URL Twilio connects to (as signed)."""
    url = raw.strip().rstrip("/")
    problem = public_url_problem(url)
    if problem is not None:
        raise ValueError(problem)
    return url


def path(raw: str) -> str:
    """A file path (not checked here: opening it reports its own error)."""
    return raw


def clip_name(raw: str) -> str:
    """A fallback clip's name (:data:`actors.fallback_audio.CLIP_NAME_RE`)."""
    if not is_clip_name(raw):
        raise ValueError("must be a clip name: 1-64 of a-z, 0-9, '_' and '-' (no extension)")
    return raw


def log_level(raw: str) -> str:
    """A log level name: DEBUG, INFO, WARNING or ERROR (any case)."""
    level = raw.upper()
    if level not in _LOG_LEVELS:
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
    return level


def workers(raw: str) -> int:
    """A worker count, or ``auto``: one per CPU core this process may run on."""
    if raw.lower() == "auto":
        if hasattr(os, "sched_getaffinity"):
            return max(1, len(os.sched_getaffinity(0)))
        return max(1, os.cpu_count() or 1)
    return positive_int(raw)


def flag(raw: str) -> bool:
    """On or off: 1/true/yes/on or 0/false/no/off (any case)."""
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be 1 or 0")
