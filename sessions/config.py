"""Daemon configuration from the environment and an optional ``.env`` file.

Every variable is read once at start-up into a frozen :class:`Settings`. A bad value fails
immediately with a :class:`~actors.errors.ConfigError` whose message is one line naming the
variable, so an operator sees exactly what to fix. ``.env.example`` documents each variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import attrs
from dotenv import dotenv_values

from actors.assistant_names import validate_assistant_name
from actors.errors import ConfigError, InvalidAssistantName
from actors.sonic.events import VOICES

T = TypeVar("T")

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")


@attrs.frozen(kw_only=True)
class Settings:
    """Everything the daemon is configured with. Built by :func:`load_settings`."""

    aws_region: str = "us-east-1"
    """Region for S3 and Bedrock (``AWS_REGION``, falling back to ``AWS_DEFAULT_REGION``)."""
    prompts_bucket: str = "nova-sonic-prompts"
    """Bucket holding the assistants' prompts (``PROMPTS_S3_BUCKET``)."""
    prompts_prefix: str = "assistants/"
    """Key prefix of the prompts, ending in ``/`` (``PROMPTS_S3_PREFIX``)."""
    prompt_cache_ttl: float = 300.0
    """Seconds a fetched prompt stays fresh (``PROMPT_CACHE_TIMEOUT``, given in milliseconds)."""
    prompt_stale_if_error: float = 3600.0
    """Seconds past expiry a prompt may still be served while S3 fails
    (``PROMPT_STALE_IF_ERROR_MS``)."""
    prompt_negative_ttl: float = 10.0
    """Seconds a "not found" answer is remembered (``PROMPT_NEGATIVE_CACHE_MS``)."""
    prompt_cache_max_entries: int = 1024
    """Most assistants kept in the prompt cache (``PROMPT_CACHE_MAX_ENTRIES``)."""
    prompt_fetch_timeout: float = 5.0
    """Deadline for one call's prompt load, in seconds (``PROMPT_FETCH_TIMEOUT_MS``)."""
    prompt_max_bytes: int = 64 * 1024
    """Largest prompt object accepted (``PROMPT_MAX_BYTES``)."""
    s3_max_connections: int = 10
    """botocore connection pool size and S3 worker-thread limit (``S3_MAX_CONNECTIONS``)."""
    sonic_model_id: str = "amazon.nova-2-sonic-v1:0"
    """Bedrock model id of Nova Sonic (``NOVA_SONIC_MODEL_ID``)."""
    sonic_voice: str = "matthew"
    """Voice the assistant speaks with (``NOVA_SONIC_VOICE``)."""
    sonic_endpointing: str = "MEDIUM"
    """Turn-taking sensitivity, HIGH, MEDIUM or LOW (``NOVA_SONIC_ENDPOINTING``)."""
    sonic_max_connections: int = 8
    """HTTP/2 connections to Bedrock at most (``SONIC_MAX_CONNECTIONS``)."""
    sonic_streams_per_connection: int = 100
    """Streams opened per connection at most; fewer if the server says so
    (``SONIC_STREAMS_PER_CONNECTION``)."""
    sonic_connect_timeout: float = 5.0
    """Seconds for TCP + TLS to Bedrock (``SONIC_CONNECT_TIMEOUT_MS``)."""
    sonic_first_response_timeout: float = 10.0
    """Seconds for Bedrock to answer a new stream (``SONIC_FIRST_RESPONSE_TIMEOUT_MS``)."""
    listen: tuple[str, int] = ("127.0.0.1", 8080)
    """Where carriers connect (``NOVAVOICE_LISTEN``, HOST:PORT)."""
    admin_listen: tuple[str, int] = ("127.0.0.1", 9090)
    """Health and metrics endpoint (``NOVAVOICE_ADMIN_LISTEN``, HOST:PORT)."""
    max_calls: int = 500
    """Concurrent calls admitted; more are refused with HTTP 503 (``MAX_CALLS``)."""
    default_assistant: str | None = None
    """Assistant for calls that name none (``DEFAULT_ASSISTANT``)."""
    drain_timeout: float = 30.0
    """Seconds running calls may continue after SIGTERM (``DRAIN_TIMEOUT_MS``)."""
    twilio_auth_token: str | None = attrs.field(default=None, repr=False)
    """Validates ``X-Twilio-Signature`` on upgrades when set (``TWILIO_AUTH_TOKEN``)."""
    twilio_public_url: str | None = None
    """The ``wss://host`` Twilio connects to, as signed (``TWILIO_PUBLIC_URL``)."""
    asterisk_basic_auth: tuple[str, str] | None = attrs.field(default=None, repr=False)
    """``user:password`` Asterisk must present (``ASTERISK_BASIC_AUTH``)."""
    asterisk_bearer_token: str | None = attrs.field(default=None, repr=False)
    """Bearer token Asterisk must present (``ASTERISK_BEARER_TOKEN``)."""
    call_log_path: str | None = None
    """Opt-in transcript log file (``CALL_LOG_PATH``); unset: no transcripts kept."""
    workers: int = 1
    """Worker processes serving calls (``NOVAVOICE_WORKERS``, a count or ``auto`` for one
    per CPU core); ``--workers`` overrides it."""
    cloudwatch_emf: bool = False
    """Write CloudWatch Embedded Metric Format lines (``METRICS_CLOUDWATCH_EMF``)."""
    cloudwatch_emf_interval: float = 60.0
    """Seconds between two sets of EMF lines (``METRICS_CLOUDWATCH_INTERVAL_MS``)."""
    cloudwatch_emf_path: str | None = None
    """File the EMF lines are appended to (``METRICS_CLOUDWATCH_EMF_PATH``); unset: stdout."""

    @property
    def authentication_configured(self) -> bool:
        """Whether any carrier authentication is configured."""
        return (
            self.twilio_auth_token is not None
            or self.asterisk_basic_auth is not None
            or self.asterisk_bearer_token is not None
        )


def _ms_to_seconds(raw: str) -> float:
    value = int(raw)
    if value < 0:
        raise ValueError("must not be negative")
    return value / 1000.0


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _bucket(raw: str) -> str:
    if not _BUCKET_RE.match(raw) or ".." in raw:
        raise ValueError("is not a valid S3 bucket name")
    return raw


def _prefix(raw: str) -> str:
    if raw.startswith("/") or "\\" in raw or ".." in raw.split("/"):
        raise ValueError("must be a relative key prefix without '..' or backslashes")
    if raw and not raw.endswith("/"):
        raise ValueError("must end with '/'")
    return raw


def _region(raw: str) -> str:
    if not _REGION_RE.match(raw):
        raise ValueError("is not an AWS region name (for example us-east-1)")
    return raw


def _model_id(raw: str) -> str:
    if not raw or any(c.isspace() for c in raw) or "/" in raw:
        raise ValueError("is not a Bedrock model id")
    return raw


def parse_host_port(raw: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) → ``(host, port)``; port 0 is allowed."""
    host, sep, port_text = raw.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError("must be HOST:PORT")
    port = int(port_text)
    if port > 65535:
        raise ValueError("port must be 0-65535")
    return host.strip("[]"), port


def _voice(raw: str) -> str:
    if raw not in VOICES:
        raise ValueError(f"is not a Nova Sonic voice ({', '.join(sorted(VOICES))})")
    return raw


def _endpointing(raw: str) -> str:
    if raw not in ("HIGH", "MEDIUM", "LOW"):
        raise ValueError("must be HIGH, MEDIUM or LOW")
    return raw


def _assistant(raw: str) -> str:
    try:
        return validate_assistant_name(raw)
    except InvalidAssistantName as exc:
        raise ValueError(str(exc)) from None


def _basic(raw: str) -> tuple[str, str]:
    user, sep, password = raw.partition(":")
    if not sep or not user or not password:
        raise ValueError("must be user:password")
    return user, password


def _secret(raw: str) -> str:
    if len(raw) < 8:
        raise ValueError("is too short to be a secret (8 characters at least)")
    return raw


def _public_url(raw: str) -> str:
    if not raw.startswith(("wss://", "ws://", "https://", "http://")):
        raise ValueError("must start with wss:// (or https://)")
    return raw.rstrip("/")


def _path(raw: str) -> str:
    return raw


def parse_workers(raw: str) -> int:
    """A worker count, or ``auto``: one per CPU core this process may run on."""
    if raw.lower() == "auto":
        if hasattr(os, "sched_getaffinity"):
            return max(1, len(os.sched_getaffinity(0)))
        return max(1, os.cpu_count() or 1)
    return _positive_int(raw)


def _flag(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be 1 or 0")


def _positive_ms(raw: str) -> float:
    return _positive_int(raw) / 1000.0


def _read(env: Mapping[str, str], name: str, parse: Callable[[str], T], default: T) -> T:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return parse(raw.strip())
    except ValueError as exc:
        detail = str(exc) if str(exc) and "invalid literal" not in str(exc) else "is not valid"
        raise ConfigError(f"{name}={raw!r}: {detail}") from None


def settings_from_mapping(env: Mapping[str, str]) -> Settings:
    """Build :class:`Settings` from a mapping of variables (the environment, usually)."""
    d = Settings()
    region_var = "AWS_REGION" if env.get("AWS_REGION") else "AWS_DEFAULT_REGION"
    region = _read(env, region_var, _region, d.aws_region)
    return Settings(
        aws_region=region,
        prompts_bucket=_read(env, "PROMPTS_S3_BUCKET", _bucket, d.prompts_bucket),
        prompts_prefix=_read(env, "PROMPTS_S3_PREFIX", _prefix, d.prompts_prefix),
        prompt_cache_ttl=_read(env, "PROMPT_CACHE_TIMEOUT", _ms_to_seconds, d.prompt_cache_ttl),
        prompt_stale_if_error=_read(
            env, "PROMPT_STALE_IF_ERROR_MS", _ms_to_seconds, d.prompt_stale_if_error
        ),
        prompt_negative_ttl=_read(
            env, "PROMPT_NEGATIVE_CACHE_MS", _ms_to_seconds, d.prompt_negative_ttl
        ),
        prompt_cache_max_entries=_read(
            env, "PROMPT_CACHE_MAX_ENTRIES", _positive_int, d.prompt_cache_max_entries
        ),
        prompt_fetch_timeout=_read(
            env, "PROMPT_FETCH_TIMEOUT_MS", _ms_to_seconds, d.prompt_fetch_timeout
        ),
        prompt_max_bytes=_read(env, "PROMPT_MAX_BYTES", _positive_int, d.prompt_max_bytes),
        s3_max_connections=_read(env, "S3_MAX_CONNECTIONS", _positive_int, d.s3_max_connections),
        sonic_model_id=_read(env, "NOVA_SONIC_MODEL_ID", _model_id, d.sonic_model_id),
        sonic_voice=_read(env, "NOVA_SONIC_VOICE", _voice, d.sonic_voice),
        sonic_endpointing=_read(env, "NOVA_SONIC_ENDPOINTING", _endpointing, d.sonic_endpointing),
        sonic_max_connections=_read(
            env, "SONIC_MAX_CONNECTIONS", _positive_int, d.sonic_max_connections
        ),
        sonic_streams_per_connection=_read(
            env, "SONIC_STREAMS_PER_CONNECTION", _positive_int, d.sonic_streams_per_connection
        ),
        sonic_connect_timeout=_read(
            env, "SONIC_CONNECT_TIMEOUT_MS", _ms_to_seconds, d.sonic_connect_timeout
        ),
        sonic_first_response_timeout=_read(
            env,
            "SONIC_FIRST_RESPONSE_TIMEOUT_MS",
            _ms_to_seconds,
            d.sonic_first_response_timeout,
        ),
        listen=_read(env, "NOVAVOICE_LISTEN", parse_host_port, d.listen),
        admin_listen=_read(env, "NOVAVOICE_ADMIN_LISTEN", parse_host_port, d.admin_listen),
        max_calls=_read(env, "MAX_CALLS", _positive_int, d.max_calls),
        default_assistant=_read(env, "DEFAULT_ASSISTANT", _assistant, d.default_assistant),
        drain_timeout=_read(env, "DRAIN_TIMEOUT_MS", _ms_to_seconds, d.drain_timeout),
        twilio_auth_token=_read(env, "TWILIO_AUTH_TOKEN", _secret, d.twilio_auth_token),
        twilio_public_url=_read(env, "TWILIO_PUBLIC_URL", _public_url, d.twilio_public_url),
        asterisk_basic_auth=_read(env, "ASTERISK_BASIC_AUTH", _basic, d.asterisk_basic_auth),
        asterisk_bearer_token=_read(env, "ASTERISK_BEARER_TOKEN", _secret, d.asterisk_bearer_token),
        call_log_path=_read(env, "CALL_LOG_PATH", _path, d.call_log_path),
        workers=_read(env, "NOVAVOICE_WORKERS", parse_workers, d.workers),
        cloudwatch_emf=_read(env, "METRICS_CLOUDWATCH_EMF", _flag, d.cloudwatch_emf),
        cloudwatch_emf_interval=_read(
            env, "METRICS_CLOUDWATCH_INTERVAL_MS", _positive_ms, d.cloudwatch_emf_interval
        ),
        cloudwatch_emf_path=_read(env, "METRICS_CLOUDWATCH_EMF_PATH", _path, d.cloudwatch_emf_path),
    )


def load_settings(
    environ: Mapping[str, str] | None = None, dotenv_path: str | Path | None = ".env"
) -> Settings:
    """Read settings from ``.env`` (if present) overlaid by the real environment.

    The process environment wins over ``.env``, as operators expect from twelve-factor apps.
    """
    merged: dict[str, str] = {}
    if dotenv_path is not None and Path(dotenv_path).is_file():
        merged.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
    merged.update(os.environ if environ is None else environ)
    return settings_from_mapping(merged)
