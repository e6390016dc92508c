"""Prometheus metrics of the daemon, on a private registry owned by one :class:`Metrics`.

Nothing here is module-level state: the supervisor builds one :class:`Metrics`, passes it to
whoever counts, and the admin server exposes ``metrics.registry``. Labels are low-cardinality
only (carrier, direction, reason, queue, error class): never a call id or an assistant name.

Hot path. Audio frames and the daemon's added latency are touched about 100 times a second per
call and direction. A ``prometheus_client`` child ``Counter.inc()`` costs about 0.4 µs and a
``Histogram.observe()`` about 1.4 µs here (they take a lock; ``bench/metrics_hot_path.py``
prints the figures), against about 0.05 µs and 0.2 µs for a plain attribute increment and a
local bucket count. So each call gets a :class:`CallMetrics` holding plain ints; the registry
reads every live tally at scrape time (no flush timer, no lag) and a closed tally is folded
into retired totals, so the exported counters stay exact and monotonic.

Call end reasons (``novavoice_calls_ended_total{reason}``), a fixed set:

- ``hangup``: the carrier ended the call normally (Twilio ``stop``, Asterisk hang-up/close).
- ``disconnected``: the carrier connection dropped without a clean close.
- ``protocol_error``: the carrier broke its protocol (malformed, oversized, out of order).
- ``prompt_error``: the assistant's prompt could not be loaded.
- ``sonic_error``: the Nova Sonic stream failed.
- ``shutdown``: ended by the daemon's drain deadline or a second signal.
- ``internal_error``: an unexpected exception (a bug) ended the call.
- ``cancelled``: the call's task tree was cancelled with no more specific reason.
- ``max_duration``: the call reached ``MAX_CALL_DURATION_MS`` and was closed politely.
- ``idle_timeout``: no caller speech and no assistant audio for ``CALL_IDLE_TIMEOUT_MS``.

Sonic recoveries (``novavoice_sonic_recoveries_total{reason,outcome}``), one per transient
Sonic failure of a running call: ``reason`` is :data:`actors.sonic.recovery.RECOVERY_REASONS`
(reset, GOAWAY, lost connection, model stream error, throttling, internal error, checksum,
stall, ...); ``outcome`` is ``recovered`` (the call went on, on a new stream),
``failed_attempt`` (the replacement stream failed too; another attempt follows) or
``failed`` (budget spent or a permanent error: the call ended).

Prompt-load failures (``novavoice_prompt_load_failures_total{reason}``), one per call whose
prompt could not be obtained (``calls_ended{reason="prompt_error"}`` lumps them together):
``not_found`` (a missing prompt or bucket), ``access_denied``, ``throttled``, ``invalid``
(the definition fails the validator, or the name the naming rule), ``timeout``,
``unavailable`` (anything else, S3 unreachable included). The same reasons are the
``Reason`` dimension of the CloudWatch EMF ``PromptLoadFailures`` metric.

Why one file of over 400 lines: it is the one place where every metric the daemon exports
is declared (name, help, labels, buckets) and pre-created, so that names, label sets and
the scrape-time collectors are defined once; the merging of workers' expositions and the
EMF lines live in their own modules.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Literal, Protocol, get_args, runtime_checkable

import attrs
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    ProcessCollector,
)
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from actors.errors import (
    InvalidAssistantName,
    PromptAccessDenied,
    PromptBucketNotFound,
    PromptError,
    PromptInvalid,
    PromptNotFound,
    PromptThrottled,
    PromptTimeout,
    SonicError,
)
from actors.sonic.recovery import RECOVERY_REASONS

logger = logging.getLogger(__name__)

Carrier = Literal["twilio", "asterisk"]
EndReason = Literal[
    "hangup",
    "disconnected",
    "protocol_error",
    "prompt_error",
    "sonic_error",
    "shutdown",
    "internal_error",
    "cancelled",
    "transferred",
    "max_duration",
    "idle_timeout",
    "assistant_hang_up",
    "transferred",
]
RefusalReason = Literal[
    "capacity",
    "not_found",
    "unknown_assistant",
    "unauthorized",
    "forbidden",
    "draining",
    "bad_request",
    "source_limit",
]
PromptFailureReason = Literal[
    "not_found", "access_denied", "throttled", "invalid", "timeout", "unavailable"
]
# caller audio towards Sonic, caller audio held until the Sonic stream is ready, assistant
# audio towards the carrier; transcript lines towards the call log's writer; caller frames
# over the call's real-time budget (CALLER_AUDIO_RATE_LIMIT, not a queue but the same loss).
QueueName = Literal["audio_in", "pre_stream", "audio_out", "call_log", "rate_limited"]
# What the caller heard of the fallback clip (sessions/fallback.py): all of it, not all of it
# (hung up, or no confirmation in time), or nothing because no clip fits the call's rate.
FallbackOutcome = Literal["heard", "cut", "no_clip"]
_Key = tuple[str, str]

CARRIERS: tuple[Carrier, ...] = get_args(Carrier)
END_REASONS: tuple[EndReason, ...] = get_args(EndReason)
REFUSAL_REASONS: tuple[RefusalReason, ...] = get_args(RefusalReason)
QUEUES: tuple[QueueName, ...] = get_args(QueueName)
RECOVERY_OUTCOMES = ("recovered", "failed_attempt", "failed")
"""Outcomes of ``novavoice_sonic_recoveries_total`` (see the module docstring)."""
PROMPT_FAILURE_REASONS: tuple[PromptFailureReason, ...] = get_args(PromptFailureReason)
FALLBACK_OUTCOMES: tuple[FallbackOutcome, ...] = get_args(FallbackOutcome)

# Sub-millisecond resolution: the daemon's own share of a frame's latency should be tiny.
ADDED_LATENCY_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
)  # fmt: skip
LOOP_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
PROMPT_LOAD_BUCKETS = (
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
FIRST_AUDIO_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


def sonic_error_types() -> tuple[str, ...]:
    """The bounded label set of ``novavoice_sonic_errors_total{type}``.

    Every class of the :class:`~actors.errors.SonicError` family defined in ``actors.errors``
    (so the set grows only when that one module does), plus ``other``.
    """
    names: list[str] = []
    pending: list[type[BaseException]] = [SonicError]
    while pending:
        cls = pending.pop()
        if cls.__module__ == SonicError.__module__:
            names.append(cls.__name__)
        pending.extend(cls.__subclasses__())
    return (*sorted(set(names)), "other")


# The error class of a failed prompt load -> its reason label; anything else is "unavailable"
# (PromptStoreError: S3 unreachable or answering 5xx). A missing bucket is a missing prompt
# as far as callers and the "prompts missing" alarm are concerned.
_PROMPT_FAILURE_REASONS: tuple[tuple[type[PromptError], PromptFailureReason], ...] = (
    (PromptNotFound, "not_found"),
    (PromptBucketNotFound, "not_found"),
    (PromptAccessDenied, "access_denied"),
    (PromptThrottled, "throttled"),
    (PromptInvalid, "invalid"),
    (InvalidAssistantName, "invalid"),
    (PromptTimeout, "timeout"),
)


def prompt_failure_reason(exc: PromptError) -> PromptFailureReason:
    """The ``reason`` label of ``novavoice_prompt_load_failures_total`` for ``exc``."""
    for cls, reason in _PROMPT_FAILURE_REASONS:
        if isinstance(exc, cls):
            return reason
    return "unavailable"


@runtime_checkable
class StatisticsSource(Protocol):
    """Anything with a ``statistics()`` method returning an attrs record (the prompt cache)."""

    def statistics(self) -> Any:
        """Return a fresh, immutable record of counts."""
        ...


class _Tally:
    """Local histogram: per-bucket counts (last slot is +Inf) and a sum, no lock."""

    __slots__ = ("counts", "total")

    def __init__(self, nbuckets: int) -> None:
        self.counts = [0] * (nbuckets + 1)
        self.total = 0.0

    def add(self, other: _Tally) -> None:
        for i, n in enumerate(other.counts):
            self.counts[i] += n
        self.total += other.total


@attrs.define(eq=False)
class CallMetrics:
    """The counting handle of one call; cheap enough for every audio frame.

    Counters are plain attributes read by the registry at scrape time. Use it as a context
    manager (``with metrics.call("twilio") as cm:``) or call :meth:`close` exactly once. Set
    :attr:`end_reason` before the end; if unset, an escaping ``Exception`` counts as
    ``internal_error``, any other escape (cancellation) as ``cancelled``, and a clean exit as
    ``hangup``.
    """

    carrier: Carrier
    _metrics: Metrics
    frames_in: int = 0
    """Carrier frames received for this call (increment directly: ``cm.frames_in += 1``)."""
    frames_out: int = 0
    """Frames sent to the carrier for this call."""
    end_reason: EndReason | None = None
    """Why the call ended; set by the call channel or the supervisor before closing."""
    _lat_in: _Tally = attrs.field(init=False, factory=lambda: _Tally(len(ADDED_LATENCY_BUCKETS)))
    _lat_out: _Tally = attrs.field(init=False, factory=lambda: _Tally(len(ADDED_LATENCY_BUCKETS)))
    _closed: bool = attrs.field(init=False, default=False)

    def added_latency_in(self, seconds: float) -> None:
        """Record the daemon's added latency for one frame going carrier → Sonic."""
        self._lat_in.counts[bisect.bisect_left(ADDED_LATENCY_BUCKETS, seconds)] += 1
        self._lat_in.total += seconds

    def added_latency_out(self, seconds: float) -> None:
        """Record the daemon's added latency for one frame going Sonic → carrier."""
        self._lat_out.counts[bisect.bisect_left(ADDED_LATENCY_BUCKETS, seconds)] += 1
        self._lat_out.total += seconds

    def barge_in(self) -> None:
        """Count one barge-in (the caller interrupted the assistant)."""
        self._metrics.barge_ins.labels(self.carrier).inc()

    def first_audio(self, seconds: float) -> None:
        """Record the time from call start to the first assistant audio sent to the carrier."""
        self._metrics.first_audio.labels(self.carrier).observe(seconds)

    def queue_dropped(self, queue: QueueName, count: int = 1) -> None:
        """Count frames dropped by a bounded queue's overflow policy."""
        self._metrics.queue_dropped(queue, count)

    def close(self, reason: EndReason | None = None) -> None:
        """End the call in the metrics: fold this tally into the totals and count the end."""
        if self._closed:
            return
        self._closed = True
        self._metrics._retire(self, reason or self.end_reason or "hangup")

    def __enter__(self) -> CallMetrics:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.end_reason is None and exc is not None:
            self.end_reason = "internal_error" if isinstance(exc, Exception) else "cancelled"
        self.close()


class Metrics:
    """Every metric of the daemon, on its own :class:`~prometheus_client.CollectorRegistry`.

    Rare events use ``prometheus_client`` objects directly (their attributes are public:
    ``metrics.sonic_stream_opens.inc()``); per-frame counts go through :meth:`call`.
    """

    def __init__(self, *, process_metrics: bool = True) -> None:
        self.registry = CollectorRegistry()
        r = self.registry

        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(f"novavoice_{name}", doc, labels, registry=r)

        def histogram(name: str, doc: str, buckets: tuple[float, ...], *labels: str) -> Histogram:
            return Histogram(f"novavoice_{name}", doc, labels, buckets=buckets, registry=r)

        self.calls_started = counter("calls_started", "Calls admitted.", "carrier")
        self.calls_ended = counter("calls_ended", "Calls ended, by reason.", "carrier", "reason")
        self.admission_refusals = counter(
            "admission_refusals", "Connections refused before the WebSocket upgrade.", "reason"
        )
        self.sonic_stream_opens = counter("sonic_stream_opens", "Nova Sonic streams opened.")
        self.sonic_errors = counter("sonic_errors", "Nova Sonic errors, by error class.", "type")
        self.sonic_recoveries = counter(
            "sonic_recoveries",
            "Transient Nova Sonic failures of running calls, by reason and outcome.",
            "reason",
            "outcome",
        )
        self.barge_ins = counter("barge_ins", "Caller barge-ins.", "carrier")
        self.queue_drops = counter("queue_drops", "Frames dropped by bounded queues.", "queue")
        self.tls_reloads = counter(
            "tls_reloads", "Carrier-listener certificate reloads (SIGHUP), by outcome.", "outcome"
        )
        self.fallbacks = counter(
            "fallbacks",
            "Calls whose assistant could not go on, by what the caller heard of the fallback clip.",
            "outcome",
        )
        self.prompt_load_failures = counter(
            "prompt_load_failures",
            "Calls whose assistant prompt could not be loaded, by reason.",
            "reason",
        )
        self.prompt_load_seconds = histogram(
            "prompt_load_seconds",
            "Time for a call to obtain its assistant's prompt (cache hit or S3).",
            PROMPT_LOAD_BUCKETS,
        )
        self.call_setup_seconds = histogram(
            "call_setup_seconds",
            "From the WebSocket upgrade to the first audioInput written to Nova Sonic "
            "(carrier start, prompt load, Sonic stream opened and set up).",
            PROMPT_LOAD_BUCKETS,
        )
        self.first_audio = histogram(
            "time_to_first_audio_seconds",
            "From call start to the first assistant audio sent to the carrier.",
            FIRST_AUDIO_BUCKETS,
            "carrier",
        )
        self.loop_lag = histogram(
            "event_loop_lag_seconds",
            "How late a timed sleep wakes up on the trio event loop.",
            LOOP_LAG_BUCKETS,
        )
        self.loop_lag_last = Gauge(
            "novavoice_event_loop_lag_last_seconds", "The latest event-loop lag sample.", registry=r
        )
        # A single process is its own one worker: the same gauges as the worker parent's
        # (sessions/workers.py), so alert rules need not know how the daemon was started.
        # The parent leaves these out when it merges its workers' metrics.
        Gauge("novavoice_workers_configured", "Worker processes configured.", registry=r).set(1)
        Gauge(
            "novavoice_workers_healthy",
            "Worker processes whose admin endpoint answered the last probe.",
            registry=r,
        ).set(1)
        self._sonic_types = sonic_error_types()
        self._known_sonic = frozenset(self._sonic_types)
        # Children created up front so every series is exported (as 0) from the first scrape.
        for carrier in CARRIERS:
            self.calls_started.labels(carrier)
            self.barge_ins.labels(carrier)
            self.first_audio.labels(carrier)
            for reason in END_REASONS:
                self.calls_ended.labels(carrier, reason)
        for refusal in REFUSAL_REASONS:
            self.admission_refusals.labels(refusal)
        for queue in QUEUES:
            self.queue_drops.labels(queue)
        for outcome in ("ok", "failed"):
            self.tls_reloads.labels(outcome)
        for outcome in FALLBACK_OUTCOMES:
            self.fallbacks.labels(outcome)
        for failure in PROMPT_FAILURE_REASONS:
            self.prompt_load_failures.labels(failure)
        for why in RECOVERY_REASONS:
            for outcome in RECOVERY_OUTCOMES:
                self.sonic_recoveries.labels(why, outcome)
        for name in self._sonic_types:
            self.sonic_errors.labels(name)

        # Scrapes may come from another thread (prometheus_client's own servers); the lock
        # makes "retire a tally" and "sum the tallies" atomic, so counters never go backwards.
        self._lock = threading.Lock()
        self._live: set[CallMetrics] = set()
        n = len(ADDED_LATENCY_BUCKETS)
        self._retired_frames: dict[_Key, int] = {(c, d): 0 for c in CARRIERS for d in ("in", "out")}
        self._retired_latency: dict[_Key, _Tally] = {
            (c, d): _Tally(n) for c in CARRIERS for d in ("in", "out")
        }
        self._prompt_cache: Callable[[], Any] | None = None
        r.register(_CallCollector(self))
        r.register(_StatisticsCollector(self))
        if process_metrics:
            ProcessCollector(registry=r)
            GCCollector(registry=r)

    # --- calls ------------------------------------------------------------------------------

    def call(self, carrier: Carrier) -> CallMetrics:
        """Count a call as started and active; returns its per-call counting handle."""
        if carrier not in CARRIERS:
            raise ValueError(f"unknown carrier {carrier!r}")
        cm = CallMetrics(carrier, self)
        with self._lock:
            self._live.add(cm)
        self.calls_started.labels(carrier).inc()
        return cm

    def _retire(self, cm: CallMetrics, reason: EndReason) -> None:
        if reason not in END_REASONS:
            reason = "internal_error"
            logger.error("unknown call end reason counted as internal_error")
        with self._lock:
            self._live.discard(cm)
            self._retired_frames[cm.carrier, "in"] += cm.frames_in
            self._retired_frames[cm.carrier, "out"] += cm.frames_out
            self._retired_latency[cm.carrier, "in"].add(cm._lat_in)
            self._retired_latency[cm.carrier, "out"].add(cm._lat_out)
        self.calls_ended.labels(cm.carrier, reason).inc()

    # --- rare events ------------------------------------------------------------------------

    def refused(self, reason: RefusalReason) -> None:
        """Count one connection refused before the upgrade."""
        if reason not in REFUSAL_REASONS:
            raise ValueError(f"unknown refusal reason {reason!r}")
        self.admission_refusals.labels(reason).inc()

    def prompt_load_failed(self, exc: PromptError) -> None:
        """Count one call whose prompt could not be loaded, under its reason."""
        self.prompt_load_failures.labels(prompt_failure_reason(exc)).inc()

    def sonic_recovery(self, reason: str, outcome: str) -> None:
        """Count one transient Sonic failure of a call and what became of it."""
        if reason in RECOVERY_REASONS and outcome in RECOVERY_OUTCOMES:
            self.sonic_recoveries.labels(reason, outcome).inc()

    def sonic_error(self, exc: BaseException) -> None:
        """Count a Sonic error under its nearest ``actors.errors`` class name (else ``other``)."""
        label = "other"
        for cls in type(exc).__mro__:
            if cls.__name__ in self._known_sonic and cls.__module__ == SonicError.__module__:
                label = cls.__name__
                break
        self.sonic_errors.labels(label).inc()

    def queue_dropped(self, queue: QueueName, count: int = 1) -> None:
        """Count ``count`` frames dropped by the named bounded queue."""
        if queue not in QUEUES:
            raise ValueError(f"unknown queue {queue!r}")
        self.queue_drops.labels(queue).inc(count)

    def observe_loop_lag(self, seconds: float) -> None:
        """Record one event-loop lag sample (histogram and last-value gauge)."""
        self.loop_lag.observe(seconds)
        self.loop_lag_last.set(seconds)

    def watch_prompt_cache(self, source: StatisticsSource | Callable[[], Any] | None) -> None:
        """Export ``source.statistics()`` (or ``source()``) at every scrape; None stops it.

        Each int field ``f`` of the returned attrs record becomes ``novavoice_prompt_cache_f``
        (a gauge: the record's meaning is the cache's business, the value is read as is).
        """
        if isinstance(source, StatisticsSource):
            self._prompt_cache = source.statistics
        else:
            self._prompt_cache = source

    # --- scrape-time view ------------------------------------------------------------------

    def _snapshot(self) -> tuple[dict[str, int], dict[_Key, int], dict[_Key, _Tally]]:
        """Active calls by carrier, then frames and added latency by (carrier, direction)."""
        n = len(ADDED_LATENCY_BUCKETS)
        with self._lock:
            frames = dict(self._retired_frames)
            latency = {k: _Tally(n) for k in self._retired_latency}
            for k, t in self._retired_latency.items():
                latency[k].add(t)
            live = list(self._live)
        active: dict[str, int] = dict.fromkeys(CARRIERS, 0)
        for cm in live:
            active[cm.carrier] += 1
            frames[cm.carrier, "in"] += cm.frames_in
            frames[cm.carrier, "out"] += cm.frames_out
            latency[cm.carrier, "in"].add(cm._lat_in)
            latency[cm.carrier, "out"].add(cm._lat_out)
        return active, frames, latency


class _CallCollector:
    """Exports the per-call tallies: active calls, frames, added latency."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def collect(self) -> Iterable[Metric]:
        active = GaugeMetricFamily(
            "novavoice_calls_active", "Calls in progress.", labels=["carrier"]
        )
        frames = CounterMetricFamily(
            "novavoice_frames", "Audio frames, by direction.", labels=["carrier", "direction"]
        )
        latency = HistogramMetricFamily(
            "novavoice_added_latency_seconds",
            "Time a frame spends inside the daemon (in: carrier to Sonic, out: Sonic to carrier).",
            labels=["carrier", "direction"],
        )
        calls, frame_counts, tallies = self._m._snapshot()
        for carrier, n in calls.items():
            active.add_metric([carrier], n)
        for (carrier, direction), count in frame_counts.items():
            frames.add_metric([carrier, direction], count)
        bounds = [str(b) for b in ADDED_LATENCY_BUCKETS] + ["+Inf"]
        for (carrier, direction), tally in tallies.items():
            cumulative = itertools.accumulate(tally.counts)
            buckets = [(b, float(c)) for b, c in zip(bounds, cumulative, strict=True)]
            latency.add_metric([carrier, direction], buckets, tally.total)
        return [active, frames, latency]


class _StatisticsCollector:
    """Reads the prompt cache's ``statistics()`` record at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def collect(self) -> Iterable[Metric]:
        read = self._m._prompt_cache
        if read is None:
            return []
        try:
            record = read()
            fields = attrs.fields(type(record))
        except Exception:
            # A broken statistics source must not break the whole scrape.
            logger.exception("prompt cache statistics unavailable", extra={"event": "metrics"})
            return []
        families: list[Metric] = []
        for field in fields:
            value = getattr(record, field.name)
            if field.name.startswith("_") or isinstance(value, bool):
                continue
            if isinstance(value, int):
                family = GaugeMetricFamily(
                    f"novavoice_prompt_cache_{field.name}",
                    f"Prompt cache statistics field {field.name}.",
                    value=value,
                )
                families.append(family)
        return families
