"""Cost of counting one audio frame: prometheus_client objects versus our per-call tallies.

Prints nanoseconds per operation (best of 5 runs). The daemon touches frame counters about
100 times a second per call and direction, so 1 µs per touch is 0.02 % of a core per call, or
10 % of a core at 500 calls with both directions counted and latency observed.
Run: ``.venv/bin/python bench/metrics_hot_path.py``.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram

from sessions.metrics import ADDED_LATENCY_BUCKETS, Metrics


def _ns(fn: Callable[[], object], number: int = 200_000) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e9


def main() -> None:
    """Print the per-operation cost of each way of counting a frame."""
    registry = CollectorRegistry()
    counter = Counter("c", "c", ["carrier", "direction"], registry=registry)
    child = counter.labels("twilio", "in")
    histogram = Histogram("h", "h", ["carrier"], buckets=ADDED_LATENCY_BUCKETS, registry=registry)
    hchild = histogram.labels("twilio")
    cm = Metrics(process_metrics=False).call("twilio")

    def tally_inc() -> None:
        cm.frames_in += 1

    rows = [
        ("Counter.labels(...).inc()", _ns(lambda: counter.labels("twilio", "in").inc())),
        ("Counter child .inc()", _ns(child.inc)),
        ("CallMetrics frames_in += 1", _ns(tally_inc)),
        ("Histogram child .observe()", _ns(lambda: hchild.observe(0.0003))),
        ("CallMetrics.added_latency_in()", _ns(lambda: cm.added_latency_in(0.0003))),
    ]
    for name, ns in rows:
        print(f"{name:34s} {ns:8.0f} ns")


if __name__ == "__main__":
    main()
