"""Merges the Prometheus expositions of several worker processes into one (sans-IO).

Why merge scraped text rather than use ``prometheus_client``'s multiprocess mode: that mode
only covers metrics kept in its mmap files, and the daemon's hot-path figures (active calls,
frames, added latency) and the prompt cache statistics are custom collectors read at scrape
time (:mod:`sessions.metrics`), which multiprocess mode cannot see. Merging keeps each worker's
:class:`~sessions.metrics.Metrics` exactly as in a single process and costs one loopback GET
per worker per scrape.

Rules, per sample name and label set:

- counters and histograms (``_total``, ``_bucket``, ``_count``, ``_sum``) and gauges are
  summed over the workers (calls active, cache entries, and so on add up);
- a gauge that is a latest sample (:data:`MAX_GAUGES`, event-loop lag) takes the maximum;
- ``process_*`` and ``python_*`` families describe each process: they keep one series per
  worker with a ``worker`` label instead of being summed;
- ``_created`` samples are dropped (a sum of start times means nothing), and so are the
  workers' own ``novavoice_workers_*`` gauges (:data:`PARENT_ONLY`): the parent's replace them.

Counters stay monotonic when a worker restarts: :meth:`MetricsMerger.retire` folds the
counter and histogram values last scraped from the dead worker into retired totals that are
added to every later merge (what the worker counted after its last scrape is lost, as with
any crash, but the totals never go backwards, which Prometheus would read as a reset).
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

MAX_GAUGES = frozenset({"novavoice_event_loop_lag_last_seconds"})
# A worker's own view of the worker gauges (it counts itself as one); the parent's replace them.
PARENT_ONLY = frozenset({"novavoice_workers_configured", "novavoice_workers_healthy"})
_PER_PROCESS_PREFIXES = ("process_", "python_")
_MONOTONIC_TYPES = frozenset({"counter", "histogram", "summary"})

_Labels = tuple[tuple[str, str], ...]
_Key = tuple[str, _Labels]


@attrs.frozen
class _Family:
    name: str
    documentation: str
    type: str
    samples: dict[_Key, float]


def parse_exposition(text: str) -> list[_Family]:
    """A worker's text exposition as families of ``(sample name, labels) -> value``."""
    families = []
    for family in text_string_to_metric_families(text):
        if family.name in PARENT_ONLY:
            continue
        samples: dict[_Key, float] = {}
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
        families.append(_Family(family.name, family.documentation, family.type, samples))
    return families


@attrs.define
class MetricsMerger:
    """Holds each worker's latest exposition and merges them into one set of families."""

    _latest: dict[int, list[_Family]] = attrs.field(factory=dict)
    _retired: dict[str, _Family] = attrs.field(factory=dict)

    def update(self, worker: int, text: str) -> None:
        """Record ``worker``'s latest ``/metrics`` text (raises ``ValueError`` if malformed)."""
        self._latest[worker] = parse_exposition(text)

    def forget(self, worker: int) -> None:
        """Drop ``worker``'s latest exposition without retiring it (a failed scrape)."""
        self._latest.pop(worker, None)

    def retire(self, worker: int) -> None:
        """``worker`` exited: keep its counters in the totals, drop everything else of it."""
        for family in self._latest.pop(worker, []):
            if family.type not in _MONOTONIC_TYPES or _per_process(family.name):
                continue
            kept = self._retired.setdefault(
                family.name, _Family(family.name, family.documentation, family.type, {})
            )
            for key, value in family.samples.items():
                kept.samples[key] = kept.samples.get(key, 0.0) + value

    def merged(self) -> list[Metric]:
        """The merged families, ready for a ``CollectorRegistry`` collector."""
        out: dict[str, tuple[_Family, dict[_Key, float]]] = {}

        def add(family: _Family, items: Iterable[tuple[_Key, float]]) -> None:
            _, values = out.setdefault(family.name, (family, {}))
            use_max = family.type == "gauge" and family.name in MAX_GAUGES
            for key, value in items:
                if key in values and use_max:
                    values[key] = max(values[key], value)
                else:
                    values[key] = values.get(key, 0.0) + value

        for family in self._retired.values():
            add(family, family.samples.items())
        for worker, families in sorted(self._latest.items()):
            for family in families:
                if _per_process(family.name):
                    label = ("worker", str(worker))
                    add(
                        family,
                        [
                            ((n, tuple(sorted((*labels, label)))), v)
                            for (n, labels), v in family.samples.items()
                        ],
                    )
                else:
                    add(family, family.samples.items())
        metrics = []
        for name, (family, values) in out.items():
            metric = Metric(name, family.documentation, family.type)
            for (sample_name, labels), value in values.items():
                metric.add_sample(sample_name, dict(labels), value)
            metrics.append(metric)
        return metrics


def _per_process(name: str) -> bool:
    return name.startswith(_PER_PROCESS_PREFIXES)
