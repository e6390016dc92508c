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

from actors.errors import ConfigError

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
