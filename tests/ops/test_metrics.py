"""Metrics: private registry, fixed label sets, exact tallies, prompt cache export."""

from __future__ import annotations

import attrs
import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from actors import errors
from actors.errors import (
    NovaVoiceError,
    PromptAccessDenied,
    PromptInvalid,
    PromptNotFound,
    PromptStoreError,
    PromptThrottled,
    SonicConnectionError,
    SonicError,
    SonicHTTPError,
    SonicStreamError,
    SonicTimeout,
)
from sessions.metrics import (
    ADDED_LATENCY_BUCKETS,
    END_REASONS,
    PROMPT_FAILURE_REASONS,
    Metrics,
    sonic_error_types,
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(m: Metrics) -> Samples:
    """Every sample of the registry, as the text exposition round-trips it."""
    text = generate_latest(m.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def frames(s: Samples, carrier: str, direction: str) -> float:
    return s["novavoice_frames_total", (("carrier", carrier), ("direction", direction))]


def test_registry_is_private_and_instances_do_not_collide() -> None:
    a, b = Metrics(), Metrics()
    a.sonic_stream_opens.inc()
    assert scrape(a)["novavoice_sonic_stream_opens_total", ()] == 1
    assert scrape(b)["novavoice_sonic_stream_opens_total", ()] == 0
    assert REGISTRY.get_sample_value("novavoice_sonic_stream_opens_total") is None


def test_every_fixed_label_is_exported_from_the_first_scrape() -> None:
    s = scrape(Metrics(process_metrics=False))
    for reason in END_REASONS:
        key = ("novavoice_calls_ended_total", (("carrier", "asterisk"), ("reason", reason)))
        assert s[key] == 0
    assert s["novavoice_admission_refusals_total", (("reason", "draining"),)] == 0
    assert s["novavoice_admission_refusals_total", (("reason", "source_limit"),)] == 0
    assert s["novavoice_queue_drops_total", (("queue", "audio_out"),)] == 0
    assert s["novavoice_queue_drops_total", (("queue", "rate_limited"),)] == 0
    assert frames(s, "asterisk", "out") == 0
    assert not any("process_" in name for name, _ in s)


def test_call_lifecycle_counts_and_frames_stay_monotonic_after_close() -> None:
    m = Metrics(process_metrics=False)
    a = m.call("twilio")
    b = m.call("twilio")
    a.frames_in += 100
    a.frames_out += 40
    b.frames_in += 5
    s = scrape(m)
    assert s["novavoice_calls_active", (("carrier", "twilio"),)] == 2
    assert s["novavoice_calls_started_total", (("carrier", "twilio"),)] == 2
    assert frames(s, "twilio", "in") == 105
    a.close("sonic_error")
    a.close("hangup")  # a second close is ignored
    s = scrape(m)
    assert s["novavoice_calls_active", (("carrier", "twilio"),)] == 1
    assert frames(s, "twilio", "in") == 105  # the closed call's frames are kept
    assert frames(s, "twilio", "out") == 40
    ended = "novavoice_calls_ended_total"
    assert s[ended, (("carrier", "twilio"), ("reason", "sonic_error"))] == 1
    assert s[ended, (("carrier", "twilio"), ("reason", "hangup"))] == 0


def test_context_manager_chooses_the_end_reason() -> None:
    m = Metrics(process_metrics=False)
    with m.call("asterisk"):
        pass
    with pytest.raises(RuntimeError), m.call("asterisk"):
        raise RuntimeError("bug")
    with pytest.raises(KeyboardInterrupt), m.call("asterisk"):
        raise KeyboardInterrupt  # a BaseException, as trio.Cancelled is
    with m.call("asterisk") as cm:
        cm.end_reason = "protocol_error"
    s = scrape(m)

    def ended(reason: str) -> float:
        return s["novavoice_calls_ended_total", (("carrier", "asterisk"), ("reason", reason))]

    assert (ended("hangup"), ended("internal_error"), ended("cancelled")) == (1, 1, 1)
    assert ended("protocol_error") == 1
    assert s["novavoice_calls_active", (("carrier", "asterisk"),)] == 0


def test_added_latency_buckets_are_cumulative_and_sub_millisecond() -> None:
    assert ADDED_LATENCY_BUCKETS[0] < 0.001
    m = Metrics(process_metrics=False)
    cm = m.call("twilio")
    for v in (0.00004, 0.0003, 0.0003, 0.002, 5.0):
        cm.added_latency_in(v)
    cm.added_latency_out(0.0001)
    cm.close()  # retired tallies are exported too
    s = scrape(m)
    lbl = (("carrier", "twilio"), ("direction", "in"))

    def bucket(le: str) -> float:
        return s["novavoice_added_latency_seconds_bucket", (*lbl, ("le", le))]

    assert bucket("5e-05") == 1
    assert bucket("0.0005") == 3
    assert bucket("0.0025") == 4
    assert bucket("0.1") == 4
    assert bucket("+Inf") == 5
    assert s["novavoice_added_latency_seconds_count", lbl] == 5
    assert s["novavoice_added_latency_seconds_sum", lbl] == pytest.approx(5.00264)
    out = (("carrier", "twilio"), ("direction", "out"), ("le", "0.0001"))
    assert s["novavoice_added_latency_seconds_bucket", out] == 1


def test_sonic_errors_are_labelled_by_nearest_known_class() -> None:
    class PoolExhausted(SonicConnectionError):
        """A subclass defined outside actors.errors: counted as its parent."""

    m = Metrics(process_metrics=False)
    m.sonic_error(SonicTimeout("connect"))
    m.sonic_error(SonicHTTPError(429, "ThrottlingException", "slow down"))
    m.sonic_error(SonicStreamError("modelTimeoutException", "late"))
    m.sonic_error(PoolExhausted("no connection"))
    m.sonic_error(OSError("boom"))
    s = scrape(m)

    def count(label: str) -> float:
        return s["novavoice_sonic_errors_total", (("type", label),)]

    assert count("SonicTimeout") == 1
    assert count("SonicHTTPError") == 1
    assert count("SonicStreamError") == 1
    assert count("SonicConnectionError") == 1
    assert count("other") == 1
    types = sonic_error_types()
    assert "SonicError" in types
    assert "PoolExhausted" not in types
    assert NovaVoiceError.__name__ not in types
    assert all(t == "other" or issubclass(getattr(errors, t), SonicError) for t in types)


def test_unknown_labels_are_refused() -> None:
    m = Metrics(process_metrics=False)
    with pytest.raises(ValueError):
        m.refused("because")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        m.queue_dropped("mystery")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        m.call("sip")  # type: ignore[arg-type]


def test_queue_drops_and_barge_ins() -> None:
    m = Metrics(process_metrics=False)
    cm = m.call("twilio")
    cm.queue_dropped("audio_out", 12)
    cm.barge_in()
    cm.first_audio(0.8)
    m.prompt_load_seconds.observe(0.0002)
    s = scrape(m)
    assert s["novavoice_prompt_load_seconds_bucket", (("le", "0.0005"),)] == 1
    assert s["novavoice_prompt_load_seconds_bucket", (("le", "0.0001"),)] == 0
    assert s["novavoice_queue_drops_total", (("queue", "audio_out"),)] == 12
    assert s["novavoice_barge_ins_total", (("carrier", "twilio"),)] == 1
    first = ("novavoice_time_to_first_audio_seconds_count", (("carrier", "twilio"),))
    assert s[first] == 1


@attrs.frozen
class FakeCacheStats:
    hits: int
    misses: int
    fetches: int
    entries: int
    healthy: bool
    oldest: float


class FakeCache:
    def __init__(self) -> None:
        self.hits = 0
        self.fail = False

    def statistics(self) -> FakeCacheStats:
        if self.fail:
            raise RuntimeError("actor gone")
        return FakeCacheStats(self.hits, 2, 1, 3, True, 1.5)


def test_prompt_cache_statistics_are_read_at_scrape_time() -> None:
    m = Metrics(process_metrics=False)
    assert not any(n.startswith("novavoice_prompt_cache_") for n, _ in scrape(m))
    cache = FakeCache()
    m.watch_prompt_cache(cache)
    cache.hits = 41
    assert scrape(m)["novavoice_prompt_cache_hits", ()] == 41
    cache.hits = 42
    s = scrape(m)
    assert s["novavoice_prompt_cache_hits", ()] == 42
    assert s["novavoice_prompt_cache_entries", ()] == 3
    assert ("novavoice_prompt_cache_healthy", ()) not in s  # bools are not counts
    assert ("novavoice_prompt_cache_oldest", ()) not in s  # only int fields


def test_a_failing_statistics_source_does_not_break_the_scrape() -> None:
    m = Metrics(process_metrics=False)
    cache = FakeCache()
    m.watch_prompt_cache(cache)
    cache.fail = True
    s = scrape(m)
    assert ("novavoice_prompt_cache_hits", ()) not in s
    assert s["novavoice_sonic_stream_opens_total", ()] == 0


def test_prompt_cache_accepts_a_plain_callable() -> None:
    m = Metrics(process_metrics=False)
    m.watch_prompt_cache(lambda: FakeCacheStats(7, 0, 0, 0, False, 0.0))
    assert scrape(m)["novavoice_prompt_cache_hits", ()] == 7
    m.watch_prompt_cache(None)
    assert ("novavoice_prompt_cache_hits", ()) not in scrape(m)


def test_loop_lag_histogram_and_gauge() -> None:
    m = Metrics(process_metrics=False)
    m.observe_loop_lag(0.003)
    m.observe_loop_lag(0.2)
    s = scrape(m)
    assert s["novavoice_event_loop_lag_seconds_count", ()] == 2
    assert s["novavoice_event_loop_lag_last_seconds", ()] == 0.2


def test_prompt_load_failures_are_counted_by_reason() -> None:
    m = Metrics(process_metrics=False)
    s = scrape(m)
    for reason in PROMPT_FAILURE_REASONS:
        assert s["novavoice_prompt_load_failures_total", (("reason", reason),)] == 0
    m.prompt_load_failed(PromptNotFound("gone", assistant="esther"))
    m.prompt_load_failed(PromptAccessDenied("no", assistant="esther"))
    m.prompt_load_failed(PromptThrottled("slow", assistant="esther"))
    m.prompt_load_failed(PromptThrottled("slow", assistant="esther"))
    m.prompt_load_failed(PromptInvalid("bad front matter", assistant="esther"))
    m.prompt_load_failed(PromptStoreError("connection refused", assistant="esther"))
    s = scrape(m)

    def n(reason: str) -> float:
        return s["novavoice_prompt_load_failures_total", (("reason", reason),)]

    assert (n("not_found"), n("access_denied"), n("throttled"), n("invalid")) == (1, 1, 2, 1)
    assert n("unavailable") == 1
    assert n("timeout") == 0
