"""CloudWatch Embedded Metric Format (EMF) documents for the origin service's metrics (sans-IO).

CloudWatch Logs turns a log event that is an EMF document into metrics, so a daemon whose
stdout goes to CloudWatch Logs (ECS ``awslogs``, the CloudWatch agent on EC2) publishes
metrics with no API call and no extra permission. :class:`EmfFormatter` turns successive
readings of the daemon's Prometheus registry into such documents; the I/O (a timer and a file
or stdout) lives in :mod:`sessions.emf_writer`.

Published in namespace ``NovaVoice``, every metric with dimension ``Service=novavoice``:

=======================  ========================================  ==========================
Metric                   Read from (the Prometheus registry)       Extra dimension
=======================  ========================================  ==========================
``S3Calls``              ``novavoice_prompt_cache_fetches``        none
``PromptCacheHits``      ``novavoice_prompt_cache_hits``           none
``PromptCacheMisses``    ``novavoice_prompt_cache_misses``         none
``ActiveCalls``          ``novavoice_calls_active`` (all carriers) none (a gauge: the value now)
``PromptLoadFailures``   ``novavoice_prompt_load_failures_total``  ``Reason``
``CallsEnded``           ``novavoice_calls_ended_total``           ``Outcome`` (the end reason)
=======================  ========================================  ==========================

Counts are deltas since the previous document set (the first set counts from the process's
start), so CloudWatch's ``Sum`` over a period is the number of events in it, summed over
every worker and host. ``ActiveCalls`` is each worker's value when the set was written: its
``Sum`` over one interval is the fleet's active calls. Each ``Reason`` and ``Outcome`` value
needs a document of its own (a dimension's value is a single top-level member), and every
value is written each interval, zero included, so an alarm on ``PromptLoadFailures`` with
``Reason=not_found`` sees 0 rather than missing data while all is well.

Document shape (the EMF specification): a root ``_aws`` object with ``Timestamp`` (ms since
the epoch) and ``CloudWatchMetrics``, a list of directives ``{Namespace, Dimensions: [[...]],
Metrics: [{Name, Unit}]}``; every dimension and metric named there is a top-level member of
the document, dimensions as strings and metrics as numbers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs
from prometheus_client import CollectorRegistry

from sessions.metrics import END_REASONS, PROMPT_FAILURE_REASONS

NAMESPACE = "NovaVoice"
SERVICE = "novavoice"
# The EMF specification's limits per directive.
MAX_METRICS_PER_DIRECTIVE = 100
MAX_DIMENSIONS_PER_SET = 30

# EMF metric -> the prompt cache statistics gauge it is read from (all counts since start).
_CACHE_COUNTS = {
    "S3Calls": "novavoice_prompt_cache_fetches",
    "PromptCacheHits": "novavoice_prompt_cache_hits",
    "PromptCacheMisses": "novavoice_prompt_cache_misses",
}


@attrs.frozen(kw_only=True)
class OriginReading:
    """The origin service's figures at one moment, as the daemon's registry holds them."""

    counts: Mapping[str, float]
    """Monotonic totals since the process started: ``S3Calls``, ``PromptCacheHits`` and
    ``PromptCacheMisses``."""
    failures: Mapping[str, float]
    """Prompt-load failures since start, by reason."""
    outcomes: Mapping[str, float]
    """Calls ended since start, by end reason (carriers summed)."""
    active_calls: float
    """Calls in progress now."""


def read_registry(registry: CollectorRegistry) -> OriginReading:
    """Read the EMF figures from ``registry`` in one pass over its collectors."""
    counts = dict.fromkeys(_CACHE_COUNTS, 0.0)
    by_sample = {sample: name for name, sample in _CACHE_COUNTS.items()}
    failures: dict[str, float] = dict.fromkeys(PROMPT_FAILURE_REASONS, 0.0)
    outcomes: dict[str, float] = dict.fromkeys(END_REASONS, 0.0)
    active = 0.0
    for family in registry.collect():
        for sample in family.samples:
            if sample.name in by_sample:
                counts[by_sample[sample.name]] += sample.value
            elif sample.name == "novavoice_prompt_load_failures_total":
                reason = sample.labels.get("reason", "")
                failures[reason] = failures.get(reason, 0.0) + sample.value
            elif sample.name == "novavoice_calls_ended_total":
                reason = sample.labels.get("reason", "")
                outcomes[reason] = outcomes.get(reason, 0.0) + sample.value
            elif sample.name == "novavoice_calls_active":
                active += sample.value
    return OriginReading(counts=counts, failures=failures, outcomes=outcomes, active_calls=active)


def _delta(now: float, before: float) -> float:
    # A total lower than before means the source restarted from zero: count from there.
    return now - before if now >= before else now


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


@attrs.define
class EmfFormatter:
    """Turns successive :class:`OriginReading` objects into EMF JSON lines of deltas.

    ``extra`` members (say the worker id) are added to every document as plain properties:
    searchable in CloudWatch Logs, not dimensions.
    """

    extra: Mapping[str, str | int] = attrs.field(factory=dict)
    _previous: OriginReading | None = None

    def documents(self, reading: OriginReading, timestamp_ms: int) -> list[dict[str, Any]]:
        """The EMF documents for ``reading``: the deltas since the previous call."""
        before = self._previous
        self._previous = reading

        def since(now: Mapping[str, float], then: Mapping[str, float] | None) -> dict[str, float]:
            return {k: _delta(v, (then or {}).get(k, 0.0)) for k, v in now.items()}

        counts = since(reading.counts, before.counts if before else None)
        failures = since(reading.failures, before.failures if before else None)
        outcomes = since(reading.outcomes, before.outcomes if before else None)
        docs = [self._document(timestamp_ms, {}, {**counts, "ActiveCalls": reading.active_calls})]
        docs.extend(
            self._document(timestamp_ms, {"Reason": r}, {"PromptLoadFailures": n})
            for r, n in failures.items()
        )
        docs.extend(
            self._document(timestamp_ms, {"Outcome": o}, {"CallsEnded": n})
            for o, n in outcomes.items()
        )
        return docs

    def lines(self, reading: OriginReading, timestamp_ms: int) -> list[str]:
        """:meth:`documents` as JSON lines (each ends with a newline)."""
        return [
            json.dumps(doc, separators=(",", ":")) + "\n"
            for doc in self.documents(reading, timestamp_ms)
        ]

    def _document(
        self, timestamp_ms: int, dimensions: Mapping[str, str], values: Mapping[str, float]
    ) -> dict[str, Any]:
        dims = {"Service": SERVICE, **dimensions}
        names = list(values)
        if len(names) > MAX_METRICS_PER_DIRECTIVE or len(dims) > MAX_DIMENSIONS_PER_SET:
            raise ValueError("EMF directive over the specification's limits")
        doc: dict[str, Any] = {
            "_aws": {
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [
                    {
                        "Namespace": NAMESPACE,
                        "Dimensions": [list(dims)],
                        "Metrics": [{"Name": name, "Unit": "Count"} for name in names],
                    }
                ],
            },
        }
        doc.update(self.extra)
        doc.update(dims)
        doc.update({name: _number(value) for name, value in values.items()})
        return doc
