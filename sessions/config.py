"""The daemon's settings: one frozen tree, loaded by one function from the environment.

:class:`Settings` holds every tunable of the daemon in sections (``listen``, ``admission``,
``prompts``, ``sonic``, ``calls``, ``logging``). Each leaf is declared once, with
:func:`setting`: its environment variable, its parser and its default (written only there,
or taken from the module that owns the protocol fact, such as the Sonic event defaults).
:func:`load_settings` reads ``.env`` (if present) overlaid by the process environment and
walks the tree; a bad value fails start-up with one :class:`~actors.errors.ConfigError` line
naming the variable. ``.env.example`` documents every variable with its default, and
``tests/test_config.py`` keeps the two in step. Durations are given in milliseconds and
held in seconds.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs
from dotenv import dotenv_values

from actors.assistant_names import AssistantName
from actors.errors import ConfigError
from actors.prompt_budget import PromptLoadBudget
from actors.prompt_store import DEFAULT_MAX_PROMPT_BYTES
from actors.sonic import events
from actors.sonic.stream import DEFAULT_MODEL_ID
from sessions import config_values as v
from sessions.dialects.asterisk import MarksMode

T = TypeVar("T")

ENV = "env"
PARSE = "parse"
FALLBACK = "fallback"

# Variables that were renamed: setting the old name fails start-up with a pointer to the new.
RENAMED = {"PROMPT_FETCH_TIMEOUT_MS": "PROMPT_LOAD_TIMEOUT_MS"}


def setting(
    env: str,
    parse: Callable[[str], T],
    default: T,
    *,
    secret: bool = False,
    fallback: str | None = None,
) -> T:
    """Declare one leaf: read from ``env`` (else ``fallback``) with ``parse``; ``default``
    when unset or empty. ``secret`` keeps the value out of ``repr``."""
    metadata = {ENV: env, PARSE: parse, FALLBACK: fallback}
    field: T = attrs.field(default=default, repr=not secret, metadata=metadata)
    return field


@attrs.frozen(kw_only=True)
class ListenSettings:
    """Where the daemon listens, and how it stops."""

    address: tuple[str, int] = setting("NOVAVOICE_LISTEN", v.host_port, ("127.0.0.1", 8080))
    """Where carriers connect (HOST:PORT)."""
    admin_address: tuple[str, int] = setting(
        "NOVAVOICE_ADMIN_LISTEN", v.host_port, ("127.0.0.1", 9090)
    )
    """Health and metrics endpoint (HOST:PORT)."""
    drain_timeout: float = setting("DRAIN_TIMEOUT_MS", v.milliseconds, 30.0)
    """Seconds running calls may continue after SIGTERM."""
    admin_token: str | None = setting("DAEMON_ADMIN_TOKEN", v.secret, None, secret=True)
    """Bearer token for ``POST /v1/prompts/{name}/refresh`` on the admin address (the prompt
    admin presents it after a publish); unset: refresh is refused."""
    workers: int = setting("NOVAVOICE_WORKERS", v.workers, 1)
    """Worker processes serving calls (a count, or ``auto`` for one per CPU core); more than
    one runs a parent process (:mod:`sessions.workers`). ``--workers`` overrides it."""


@attrs.frozen(kw_only=True)
class AdmissionSettings:
    """Who may connect, and how many at once (the supervisor's policy)."""

    max_calls: int = setting("MAX_CALLS", v.positive_int, 500)
    """Concurrent calls admitted; more are refused with HTTP 503."""
    handshake_timeout: float = setting(
        "WEBSOCKET_HANDSHAKE_TIMEOUT_MS", v.positive_milliseconds, 10.0
    )
    """Seconds a client has to complete the WebSocket handshake."""
    twilio_auth_token: str | None = setting("TWILIO_AUTH_TOKEN", v.secret, None, secret=True)
    """Validates ``X-Twilio-Signature`` on upgrades when set."""
    twilio_public_url: str | None = setting("TWILIO_PUBLIC_URL", v.public_url, None)
    """The ``wss://host`` Twilio connects to, as signed."""
    asterisk_basic_auth: tuple[str, str] | None = setting(
        "ASTERISK_BASIC_AUTH", v.basic_auth, None, secret=True
    )
    """``user:password`` Asterisk must present (websocket_client.conf username/password)."""
    asterisk_bearer_token: str | None = setting(
        "ASTERISK_BEARER_TOKEN", v.secret, None, secret=True
    )
    """Bearer token for a proxy in front of the daemon (Asterisk itself can send only Basic)."""
    prompt_check: float = setting("ADMISSION_PROMPT_CHECK_MS", v.milliseconds, 0.3)
    """Seconds an upgrade may wait to learn whether the named assistant's prompt exists
    (a missing one is refused with 404 before answering); 0: the negative cache only."""

    @property
    def authentication_configured(self) -> bool:
        """Whether any carrier authentication is configured."""
        return (
            self.twilio_auth_token is not None
            or self.asterisk_basic_auth is not None
            or self.asterisk_bearer_token is not None
        )


@attrs.frozen(kw_only=True)
class PromptSettings:
    """Where prompts live, how long they are cached, and the time budget for loading one."""

    bucket: str = setting("PROMPTS_S3_BUCKET", v.bucket, "nova-sonic-prompts")
    """Bucket holding the assistants' prompts."""
    prefix: str = setting("PROMPTS_S3_PREFIX", v.key_prefix, "assistants/")
    """Key prefix of the prompts, ending in ``/``."""
    cache_ttl: float = setting("PROMPT_CACHE_TIMEOUT", v.milliseconds, 300.0)
    """Seconds a fetched prompt stays fresh (the origin service's variable, milliseconds)."""
    stale_if_error: float = setting("PROMPT_STALE_IF_ERROR_MS", v.milliseconds, 3600.0)
    """Seconds past expiry a prompt may still be served while S3 fails."""
    negative_ttl: float = setting("PROMPT_NEGATIVE_CACHE_MS", v.milliseconds, 10.0)
    """Seconds a "not found" answer is remembered."""
    refresh_retry_interval: float = setting("PROMPT_REFRESH_RETRY_MS", v.milliseconds, 1.0)
    """While serving a stale prompt, seconds between attempts to refresh it."""
    cache_max_entries: int = setting("PROMPT_CACHE_MAX_ENTRIES", v.positive_int, 1024)
    """Most assistants kept in the prompt cache."""
    load_timeout: float = setting("PROMPT_LOAD_TIMEOUT_MS", v.positive_milliseconds, 5.0)
    """The one time budget for loading a call's prompt (see :mod:`actors.prompt_budget`)."""
    max_bytes: int = setting("PROMPT_MAX_BYTES", v.positive_int, DEFAULT_MAX_PROMPT_BYTES)
    """Largest prompt object accepted."""
    s3_max_connections: int = setting("S3_MAX_CONNECTIONS", v.positive_int, 10)
    """botocore connection pool size and S3 worker-thread limit."""

    @property
    def budget(self) -> PromptLoadBudget:
        """The prompt-load budget and every deadline derived from it."""
        return PromptLoadBudget(self.load_timeout)


@attrs.frozen(kw_only=True)
class SonicSettings:
    """The Bedrock connection: model, pool and its deadlines."""

    model_id: str = setting("NOVA_SONIC_MODEL_ID", v.model_id, DEFAULT_MODEL_ID)
    """Bedrock model id of Nova Sonic."""
    max_connections: int = setting("SONIC_MAX_CONNECTIONS", v.positive_int, 8)
    """HTTP/2 connections to Bedrock at most."""
    streams_per_connection: int = setting("SONIC_STREAMS_PER_CONNECTION", v.positive_int, 100)
    """Streams opened per connection at most; fewer if the server says so."""
    connect_timeout: float = setting("SONIC_CONNECT_TIMEOUT_MS", v.positive_milliseconds, 5.0)
    """Seconds for TCP + TLS to Bedrock."""
    first_response_timeout: float = setting(
        "SONIC_FIRST_RESPONSE_TIMEOUT_MS", v.positive_milliseconds, 10.0
    )
    """Seconds for Bedrock to answer a new stream."""


def _rotate_after(raw: str) -> float:
    value = v.positive_milliseconds(raw)
    if value >= 480.0:
        raise ValueError("must be below 480000 (Bedrock ends a stream after 8 minutes)")
    return value


@attrs.frozen(kw_only=True)
class CallSettings:
    """Per-call behaviour: the conversation's model parameters and the call's buffers."""

    # setting() declares an attrs field (RUF009 cannot tell), not a shared mutable default.
    default_assistant: AssistantName | None = setting("DEFAULT_ASSISTANT", v.assistant, None)  # noqa: RUF009
    """Assistant used when the carrier names none (``None``: such calls are refused)."""
    voice_id: str = setting("NOVA_SONIC_VOICE", v.voice, events.DEFAULT_VOICE)
    """Voice the assistant speaks with."""
    endpointing_sensitivity: str | None = setting(
        "NOVA_SONIC_ENDPOINTING", v.endpointing, events.DEFAULT_ENDPOINTING
    )
    """Turn-taking sensitivity, HIGH, MEDIUM or LOW."""
    max_tokens: int = setting(
        "NOVA_SONIC_MAX_TOKENS", v.int_between(1, 10000), events.DEFAULT_MAX_TOKENS
    )
    """Most tokens the model may generate per answer."""
    top_p: float = setting("NOVA_SONIC_TOP_P", v.fraction, events.DEFAULT_TOP_P)
    """Nucleus sampling threshold."""
    temperature: float = setting("NOVA_SONIC_TEMPERATURE", v.fraction, events.DEFAULT_TEMPERATURE)
    """Sampling temperature."""
    rotate_after: float = setting("NOVA_SONIC_ROTATE_AFTER_MS", _rotate_after, 360.0)
    """Seconds after which a call's Sonic stream is replaced by a fresh one (with the
    conversation replayed), ahead of Bedrock's 8-minute stream limit."""
    start_timeout: float = setting("CALL_START_TIMEOUT_MS", v.positive_milliseconds, 10.0)
    """Seconds the carrier has, after the upgrade, to start the media stream."""
    chunk_ms: int = setting("CALL_AUDIO_CHUNK_MS", v.int_between(10, 200), 32)
    """Duration of one ``audioInput`` chunk (reference nova-sonic.md §4: about 32 ms)."""
    audio_message_ms: int = setting("CALL_AUDIO_MESSAGE_MS", v.int_between(20, 1000), 200)
    """Most assistant audio per carrier message: the whole 20 ms frames of one Sonic audio
    event go out together up to this much (fewer, larger messages; nothing is held back)."""
    silence_after: float = setting("CALL_COMFORT_SILENCE_AFTER_MS", v.positive_milliseconds, 0.2)
    """Quiet seconds from the carrier after which comfort silence is sent to Sonic."""
    pre_stream_seconds: float = setting("CALL_PRE_STREAM_BUFFER_MS", v.positive_milliseconds, 10.0)
    """Caller audio kept while the Sonic stream opens; beyond it the newest is dropped."""
    outbound_seconds: float = setting("CALL_OUTBOUND_BUFFER_MS", v.positive_milliseconds, 2.0)
    """Assistant audio queued towards a slow or paused carrier before Sonic is held back."""
    close_timeout: float = setting("CALL_CLOSE_TIMEOUT_MS", v.positive_milliseconds, 2.0)
    """Seconds allowed for the carrier's close handshake at the end of a call."""
    # An enum member is immutable: RUF009 cannot tell setting() declares an attrs field.
    asterisk_marks: MarksMode = setting("ASTERISK_MARKS", v.asterisk_marks, MarksMode.AUTO)  # noqa: RUF009
    """``MARK_MEDIA`` towards Asterisk: ``auto`` (only when MEDIA_START shows a release that
    has it, i.e. the JSON control format), ``on`` or ``off``."""
    max_call_duration: float = setting("MAX_CALL_DURATION_MS", v.positive_milliseconds, 7200.0)
    """Seconds after the upgrade at which a call is closed politely (close code 4301)."""
    idle_timeout: float = setting("CALL_IDLE_TIMEOUT_MS", v.positive_milliseconds, 120.0)
    """Seconds without caller speech (audio above a small energy threshold; silence from
    the carrier and the daemon's comfort silence do not count) and without assistant audio
    after which a call is closed politely (close code 4302)."""


@attrs.frozen(kw_only=True)
class LoggingSettings:
    """What the daemon logs, and where transcripts go."""

    level: str = setting("NOVAVOICE_LOG_LEVEL", v.log_level, "INFO")
    """Service log level (``--log-level`` overrides it)."""
    call_log_path: str | None = setting("CALL_LOG_PATH", v.path, None)
    """Opt-in transcript log file; unset: no transcripts kept."""


@attrs.frozen(kw_only=True)
class MetricsSettings:
    """Metrics pushed besides ``/metrics``: CloudWatch EMF lines (:mod:`sessions.emf_writer`)."""

    cloudwatch_emf: bool = setting("METRICS_CLOUDWATCH_EMF", v.flag, False)
    """Write CloudWatch Embedded Metric Format lines."""
    cloudwatch_emf_interval: float = setting(
        "METRICS_CLOUDWATCH_INTERVAL_MS", v.positive_milliseconds, 60.0
    )
    """Seconds between two sets of EMF lines."""
    cloudwatch_emf_path: str | None = setting("METRICS_CLOUDWATCH_EMF_PATH", v.path, None)
    """File the EMF lines are appended to; unset: standard output."""


@attrs.frozen(kw_only=True)
class Settings:
    """Everything the daemon is configured with. Built by :func:`load_settings`."""

    aws_region: str = setting("AWS_REGION", v.region, "us-east-1", fallback="AWS_DEFAULT_REGION")
    """Region for S3 and Bedrock (``AWS_REGION``, falling back to ``AWS_DEFAULT_REGION``)."""
    listen: ListenSettings = attrs.field(factory=ListenSettings)
    admission: AdmissionSettings = attrs.field(factory=AdmissionSettings)
    prompts: PromptSettings = attrs.field(factory=PromptSettings)
    sonic: SonicSettings = attrs.field(factory=SonicSettings)
    calls: CallSettings = attrs.field(factory=CallSettings)
    logging: LoggingSettings = attrs.field(factory=LoggingSettings)
    metrics: MetricsSettings = attrs.field(factory=MetricsSettings)

    def replace(self, **sections: Mapping[str, Any]) -> Settings:
        """A copy with some fields of some sections changed.

        ``settings.replace(prompts={"cache_ttl": 1.0})``; top-level leaves go under ``""``.
        """
        changes: dict[str, Any] = dict(sections.pop("", {}))
        for name, fields in sections.items():
            changes[name] = attrs.evolve(getattr(self, name), **fields)
        return attrs.evolve(self, **changes)


def _section_type(field: attrs.Attribute[Any]) -> type[Any]:
    # A section field's default is attrs.Factory(SectionClass).
    section: type[Any] = getattr(field.default, "factory")  # noqa: B009
    return section


def variables() -> Iterator[tuple[str, attrs.Attribute[Any]]]:
    """Every setting as ``(section, field)``; section ``""`` is the root of the tree."""
    for field in attrs.fields(Settings):
        if ENV in field.metadata:
            yield "", field
        else:
            for leaf in attrs.fields(_section_type(field)):
                yield field.name, leaf


def _read(env: Mapping[str, str], field: attrs.Attribute[Any]) -> Any:
    name = field.metadata[ENV]
    fallback = field.metadata[FALLBACK]
    if not env.get(name, "").strip() and fallback is not None:
        name = fallback
    raw = env.get(name, "").strip()
    if not raw:
        return field.default
    try:
        return field.metadata[PARSE](raw)
    except ValueError as exc:
        detail = str(exc)
        if not detail or "invalid literal" in detail or "could not convert" in detail:
            detail = "is not valid"
        raise ConfigError(f"{name}={raw!r}: {detail}") from None


def settings_from_mapping(env: Mapping[str, str]) -> Settings:
    """Build :class:`Settings` from a mapping of variables (the environment, usually)."""
    for old, new in RENAMED.items():
        if env.get(old, "").strip():
            raise ConfigError(f"{old}={env[old]!r}: renamed, set {new} instead")
    root: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    for section, field in variables():
        target = root if not section else sections.setdefault(section, {})
        target[field.name] = _read(env, field)
    for field in attrs.fields(Settings):
        if field.name in sections:
            root[field.name] = _section_type(field)(**sections[field.name])
    return Settings(**root)


def load_settings(
    environ: Mapping[str, str] | None = None, dotenv_path: str | Path | None = ".env"
) -> Settings:
    """Read settings from ``.env`` (if present) overlaid by the real environment.

    The process environment wins over ``.env``, as operators expect from twelve-factor apps.
    """
    merged: dict[str, str] = {}
    if dotenv_path is not None and Path(dotenv_path).is_file():
        merged.update({k: val for k, val in dotenv_values(dotenv_path).items() if val is not None})
    merged.update(os.environ if environ is None else environ)
    return settings_from_mapping(merged)
