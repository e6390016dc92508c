"""Merging worker expositions, and the worker restart backoff (both sans-IO)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from sessions.metrics import Metrics
from sessions.metrics_merge import MetricsMerger
from sessions.workers import Backoff, ParentMetrics


def exposition(m: Metrics) -> str:
    return generate_latest(m.registry).decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def merged_text(merger: MetricsMerger) -> str:
    registry = CollectorRegistry()

    class Collector:
        def collect(self) -> list[Metric]:
            return merger.merged()

    registry.register(Collector())
    return generate_latest(registry).decode()


def two_workers() -> tuple[Metrics, Metrics]:
    a, b = Metrics(), Metrics()
    for _ in range(3):
        a.call("twilio").close("hangup")
    b.call("twilio").close("hangup")
    b.call("asterisk")  # still active
    a.call("twilio")  # still active
    a.first_audio.labels("twilio").observe(0.3)
    b.first_audio.labels("twilio").observe(2.0)
    a.observe_loop_lag(0.004)
    b.observe_loop_lag(0.02)
    return a, b


def test_counters_histograms_and_gauges_are_summed_per_label_set() -> None:
    a, b = two_workers()
    merger = MetricsMerger()
    merger.update(0, exposition(a))
    merger.update(1, exposition(b))
    s = samples(merged_text(merger))
    assert s["novavoice_calls_ended_total", (("carrier", "twilio"), ("reason", "hangup"))] == 4
    assert s["novavoice_calls_active", (("carrier", "twilio"),)] == 1
    assert s["novavoice_calls_active", (("carrier", "asterisk"),)] == 1
    first_audio = (("carrier", "twilio"),)
    assert s["novavoice_time_to_first_audio_seconds_count", first_audio] == 2
    assert s["novavoice_time_to_first_audio_seconds_sum", first_audio] == 2.3
    le = (("carrier", "twilio"), ("le", "0.5"))
    assert s["novavoice_time_to_first_audio_seconds_bucket", le] == 1
    # A latest-sample gauge takes the worst worker, not the sum.
    assert s["novavoice_event_loop_lag_last_seconds", ()] == 0.02
    assert not any(name.endswith("_created") for name, _ in s)


def test_process_metrics_stay_per_worker() -> None:
    a, b = two_workers()
    merger = MetricsMerger()
    merger.update(0, exposition(a))
    merger.update(3, exposition(b))
    s = samples(merged_text(merger))
    workers = {dict(labels).get("worker") for name, labels in s if name.startswith("process_")}
    assert workers == {"0", "3"}


def test_a_restarted_workers_counters_never_go_backwards() -> None:
    a, b = two_workers()
    merger = MetricsMerger()
    merger.update(0, exposition(a))
    merger.update(1, exposition(b))
    key = ("novavoice_calls_ended_total", (("carrier", "twilio"), ("reason", "hangup")))
    assert samples(merged_text(merger))[key] == 4
    # Worker 0 dies; its replacement starts from zero and counts one call.
    merger.retire(0)
    fresh = Metrics()
    fresh.call("twilio").close("hangup")
    merger.update(0, exposition(fresh))
    s = samples(merged_text(merger))
    assert s[key] == 5
    # Gauges of the dead worker are gone, not kept: its active call no longer exists.
    assert s["novavoice_calls_active", (("carrier", "twilio"),)] == 0


def test_parent_registry_exposes_its_own_gauges_with_the_merged_workers() -> None:
    parent = ParentMetrics.create()
    parent.configured.set(2)
    parent.healthy.set(1)
    parent.restarts.inc()
    a, _ = two_workers()
    parent.merger.update(0, exposition(a))
    s = samples(generate_latest(parent.registry).decode())
    assert s["novavoice_workers_configured", ()] == 2
    assert s["novavoice_workers_healthy", ()] == 1
    assert s["novavoice_worker_restarts_total", ()] == 1
    assert s["novavoice_calls_started_total", (("carrier", "twilio"),)] == 4
    # The worker's own "I am one healthy worker" gauges do not leak into the parent's.
    text = generate_latest(parent.registry).decode()
    assert text.count("# TYPE novavoice_workers_healthy gauge") == 1


def test_a_single_process_reports_itself_as_one_healthy_worker() -> None:
    s = samples(exposition(Metrics()))
    assert s["novavoice_workers_configured", ()] == 1
    assert s["novavoice_workers_healthy", ()] == 1


def test_backoff_doubles_to_the_cap_and_resets_after_a_stable_run() -> None:
    backoff = Backoff(initial=0.5, cap=4.0, stable=30.0)
    delays = [backoff.delay(ran_for=1.0) for _ in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.delay(ran_for=31.0) == 0.5
    assert backoff.delay(ran_for=2.0) == 1.0
