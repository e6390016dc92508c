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
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs
from dotenv import dotenv_values

from actors.assistant_names import AssistantName
from actors.errors import ConfigError
from actors.fallback_audio import SHIPPED_CLIP
from actors.prompt_budget import PromptLoadBudget
from actors.prompt_store import DEFAULT_MAX_PROMPT_BYTES
from actors.sonic import events
from actors.sonic.recovery import RecoveryPolicy
from actors.sonic.stream import DEFAULT_MODEL_ID
from actors.tool_runner import DEFAULT_MAX_RESULT_BYTES, DEFAULT_TIMEOUT
from actors.webhook_policy import check_webhook_url
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
class TlsSettings:
    """TLS on the carrier listener (:mod:`sessions.tls`): the daemon serves ``wss://`` itself
    when both files are given; SIGHUP reloads them."""

    cert_path: str | None = setting("NOVAVOICE_TLS_CERT", v.path, None)
    """PEM certificate chain (leaf first) for the carrier listener."""
    key_path: str | None = setting("NOVAVOICE_TLS_KEY", v.path, None)
    """PEM private key of that certificate."""
    terminated_upstream: bool = setting("NOVAVOICE_TLS_TERMINATED_UPSTREAM", v.flag, False)
    """Declares that a proxy or load balancer in front terminates TLS, so carrier credentials
    may reach a plain listener beyond loopback."""


@attrs.frozen(kw_only=True)
class AdmissionSettings:
    """Who may connect, and how many at once (the supervisor's policy)."""

    max_calls: int = setting("MAX_CALLS", v.positive_int, 500)
    """Concurrent calls admitted; more are refused with HTTP 503."""
    handshake_timeout: float = setting(
        "WEBSOCKET_HANDSHAKE_TIMEOUT_MS", v.positive_milliseconds, 10.0
    )
    """Seconds a client has to complete the WebSocket handshake."""
    carriers: tuple[str, ...] = setting("CARRIERS", v.carriers, v.KNOWN_CARRIERS)
    """Carriers served (``twilio``, ``asterisk``); a disabled carrier's route answers 404."""
    twilio_auth_tokens: tuple[str, ...] = setting(
        "TWILIO_AUTH_TOKEN", v.secret_list, (), secret=True
    )
    """Auth tokens ``X-Twilio-Signature`` may be made with (a comma list: a match with any
    is accepted, so the secondary token can be promoted without an outage)."""
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
    max_unstarted_per_source: int = setting(
        "MAX_UNSTARTED_PER_SOURCE", v.int_between(0, 1_000_000), 16
    )
    """Connections one source address may hold between the upgrade request and the
    carrier's start; more are refused with HTTP 429 before the upgrade. The source is the
    TCP peer (``X-Forwarded-For`` is not trusted): behind a proxy or load balancer every
    connection comes from its address, so raise this or set 0 (no cap) there."""


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
    recovery_max_attempts: int = setting("SONIC_RECOVERY_MAX_ATTEMPTS", v.int_between(0, 100), 8)
    """Replacement streams a call may open after transient Sonic failures (0: none)."""
    recovery_backoff: float = setting("SONIC_RECOVERY_BACKOFF_MS", v.milliseconds, 0.2)
    """Seconds: the first recovery's back-off cap, doubled per attempt (full jitter)."""
    recovery_backoff_max: float = setting("SONIC_RECOVERY_BACKOFF_MAX_MS", v.milliseconds, 5.0)
    """Seconds: the longest back-off before a recovery attempt."""
    stall_timeout: float = setting("SONIC_STALL_TIMEOUT_MS", v.milliseconds, 8.0)
    """Seconds without any Sonic output after caller speech that count as a stalled stream
    (then recovered like a reset; 0: no watchdog). Above the longest endpointing pause
    (2 s) plus a slow first answer, so a working model is never taken for a stalled one."""

    def recovery_policy(self) -> RecoveryPolicy:
        """The recovery policy every call of the daemon uses."""
        return RecoveryPolicy(
            max_attempts=self.recovery_max_attempts,
            backoff=self.recovery_backoff,
            backoff_max=self.recovery_backoff_max,
            stall_timeout=self.stall_timeout,
        )


def _rotate_after(raw: str) -> float:
    value = v.positive_milliseconds(raw)
    if value >= 480.0:
        raise ValueError("must be below 480000 (Bedrock ends a stream after 8 minutes)")
    return value


def _real_time_multiple(raw: str) -> float:
    value = float(raw)
    if value != 0 and not 1.0 <= value <= 1000.0:
        raise ValueError("must be 0 (off) or a multiple of real time from 1 to 1000")
    return value


def _audio_burst(raw: str) -> float:
    value = v.milliseconds(raw)
    if value < 1.0:
        raise ValueError("must be at least 1000 (shorter drops audio sent in real time)")
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
    caller_audio_rate: float = setting("CALLER_AUDIO_RATE_LIMIT", _real_time_multiple, 2.0)
    """Caller audio accepted, in multiples of real time, beyond ``caller_audio_burst``: over
    any window of T seconds at most burst + rate x T seconds of audio go on to Sonic; frames
    over it are dropped and counted (``rate_limited``). 0: no limit
    (:mod:`actors.frame_budget`)."""
    caller_audio_burst: float = setting("CALLER_AUDIO_BURST_MS", _audio_burst, 5.0)
    """Seconds of caller audio that may arrive at once above the rate (the backlog after a
    network stall of that long is kept whole)."""
    caller_audio_abuse_rate: float = setting("CALLER_AUDIO_ABUSE_RATE", _real_time_multiple, 10.0)
    """Caller audio, in multiples of real time beyond ``caller_audio_abuse_burst``, at which
    the call is closed (close code 4009): a carrier flooding, not jittering. 0: never."""
    caller_audio_abuse_burst: float = setting("CALLER_AUDIO_ABUSE_BURST_MS", _audio_burst, 30.0)
    """Seconds of caller audio above the abuse rate tolerated before the call is closed."""
    fallback_audio: str = setting("FALLBACK_AUDIO", v.clip_name, SHIPPED_CLIP)
    """The fallback clip of assistants whose definition names none (``fallback_audio:``)."""
    fallback_audio_dir: str | None = setting("FALLBACK_AUDIO_DIR", v.path, None)
    """Directory of the operator's fallback clips (``<name>.ulaw``, ``.sln``, ``.sln16``),
    read at start-up; unset: only the shipped ``apology``."""
    fallback_play_margin: float = setting("FALLBACK_PLAY_MARGIN_MS", v.positive_milliseconds, 3.0)
    """Seconds, beyond the clip's own length, a failed call waits for the carrier to confirm
    the fallback clip was played before it ends (or is transferred) anyway."""


def _twilio_account_sid(raw: str) -> str:
    if not re.fullmatch(r"AC[0-9a-fA-F]{32}", raw):
        raise ValueError("must be a Twilio account SID (AC followed by 32 hex digits)")
    return raw


def _api_base_url(raw: str) -> str:
    problem = check_webhook_url(raw)
    if problem is not None:
        raise ValueError(problem)
    return raw.rstrip("/")


@attrs.frozen(kw_only=True)
class ToolSettings:
    """The assistants' tools (:mod:`actors.tool_executors`): limits, the Twilio REST API."""

    timeout: float = setting("TOOL_TIMEOUT_MS", v.positive_milliseconds, DEFAULT_TIMEOUT)
    """Seconds a tool may run when its definition sets no ``timeout`` (a transfer: 30 s)."""
    result_max_bytes: int = setting(
        "TOOL_RESULT_MAX_BYTES", v.int_between(256, 1 << 20), DEFAULT_MAX_RESULT_BYTES
    )
    """Largest tool result handed to the model; a larger one becomes an error result."""
    speech_wait: float = setting("TOOL_SPEECH_WAIT_MS", v.positive_milliseconds, 15.0)
    """Seconds ``hang_up`` and ``transfer`` wait at most for the current sentence to play."""
    quiet_after_speech: float = setting("TOOL_QUIET_AFTER_SPEECH_MS", v.milliseconds, 1.5)
    """Seconds without new assistant audio, once its audio has played, that mark the end of
    the sentence (the model may still be answering the tool's result)."""
    ca_bundle: str | None = setting("TOOL_CA_BUNDLE", v.path, None)
    """PEM file of CAs trusted for webhooks and the Twilio API; unset: the system's."""
    twilio_account_sid: str | None = setting("TWILIO_ACCOUNT_SID", _twilio_account_sid, None)
    """Account whose REST API transfers calls; unset: the call's own (Twilio's start
    message). The password is ``TWILIO_AUTH_TOKEN``."""
    twilio_api_base_url: str = setting(
        "TWILIO_API_BASE_URL", _api_base_url, "https://api.twilio.com"
    )
    """Twilio's REST API (a local fake in tests and the demo)."""


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
    tls: TlsSettings = attrs.field(factory=TlsSettings)
    admission: AdmissionSettings = attrs.field(factory=AdmissionSettings)
    prompts: PromptSettings = attrs.field(factory=PromptSettings)
    sonic: SonicSettings = attrs.field(factory=SonicSettings)
    calls: CallSettings = attrs.field(factory=CallSettings)
    logging: LoggingSettings = attrs.field(factory=LoggingSettings)
    metrics: MetricsSettings = attrs.field(factory=MetricsSettings)
    tools: ToolSettings = attrs.field(factory=ToolSettings)

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
