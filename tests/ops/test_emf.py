"""CloudWatch EMF: the documents follow the specification and carry the registry's deltas."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import trio

from actors.errors import (
    InvalidAssistantName,
    PromptAccessDenied,
    PromptBucketNotFound,
    PromptInvalid,
    PromptNotFound,
    PromptStoreError,
    PromptThrottled,
    PromptTimeout,
)
from sessions.emf import EmfFormatter, OriginReading, read_registry
from sessions.emf_writer import run_emf_writer
from sessions.metrics import END_REASONS, PROMPT_FAILURE_REASONS, Metrics, prompt_failure_reason
from tests.ops.test_metrics import FakeCacheStats

# CloudWatch's metric units (PutMetricData's MetricDatum.Unit).
UNITS = {
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
    "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
    "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second",
    "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second", "Gigabits/Second",
    "Terabits/Second", "Count/Second", "None",
}  # fmt: skip
# One document for the Service-only metrics, one per failure reason, one per call outcome.
SET_SIZE = 1 + len(PROMPT_FAILURE_REASONS) + len(END_REASONS)


def check_emf(doc: Any) -> None:
    """Assert ``doc`` is a valid EMF document (CloudWatch's EMF specification)."""
    assert isinstance(doc, dict)
    meta = doc["_aws"]
    assert isinstance(meta, dict)
    assert set(meta) <= {"Timestamp", "CloudWatchMetrics", "LogGroupName", "LogStreamName"}
    timestamp = meta["Timestamp"]
    assert isinstance(timestamp, int) and not isinstance(timestamp, bool)
    directives = meta["CloudWatchMetrics"]
    assert isinstance(directives, list) and directives
    for directive in directives:
        assert set(directive) == {"Namespace", "Dimensions", "Metrics"}
        assert isinstance(directive["Namespace"], str)
        assert 1 <= len(directive["Namespace"]) <= 1024
        for dimension_set in directive["Dimensions"]:
            assert isinstance(dimension_set, list)
            assert len(dimension_set) <= 30
            for name in dimension_set:
                assert isinstance(name, str) and 1 <= len(name) <= 250
                assert isinstance(doc[name], str), f"dimension {name} is not a string member"
                assert 1 <= len(doc[name]) <= 1024
        assert 1 <= len(directive["Metrics"]) <= 100
        for metric in directive["Metrics"]:
            assert set(metric) <= {"Name", "Unit", "StorageResolution"}
            assert isinstance(metric["Name"], str) and 1 <= len(metric["Name"]) <= 1024
            assert metric.get("Unit", "None") in UNITS
            value = doc[metric["Name"]]
            values = value if isinstance(value, list) else [value]
            assert 1 <= len(values) <= 100
            assert all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def by_metric(docs: list[dict[str, Any]]) -> dict[tuple[str, str | None], Any]:
    """(metric, Reason or Outcome dimension) -> value, with every document's Service checked."""
    out: dict[tuple[str, str | None], Any] = {}
    for doc in docs:
        check_emf(doc)
        directive = doc["_aws"]["CloudWatchMetrics"][0]
        assert directive["Namespace"] == "NovaVoice"
        assert doc["Service"] == "novavoice"
        assert "Service" in directive["Dimensions"][0]
        extra = doc.get("Reason", doc.get("Outcome"))
        for metric in directive["Metrics"]:
            out[metric["Name"], extra] = doc[metric["Name"]]
    return out


def test_prompt_failures_map_to_the_fixed_reasons() -> None:
    cases = {
        PromptNotFound: "not_found",
        PromptBucketNotFound: "not_found",
        PromptAccessDenied: "access_denied",
        PromptThrottled: "throttled",
        PromptInvalid: "invalid",
        InvalidAssistantName: "invalid",
        PromptTimeout: "timeout",
        PromptStoreError: "unavailable",
    }
    for cls, reason in cases.items():
        assert prompt_failure_reason(cls("x", assistant="a")) == reason


def test_documents_follow_the_specification_and_name_every_metric() -> None:
    m = Metrics(process_metrics=False)
    docs = EmfFormatter().documents(read_registry(m.registry), 1_780_000_000_123)
    values = by_metric(docs)
    assert {name for name, _ in values} == {
        "S3Calls",
        "PromptCacheHits",
        "PromptCacheMisses",
        "ActiveCalls",
        "PromptLoadFailures",
        "CallsEnded",
    }
    reasons = {r for name, r in values if name == "PromptLoadFailures"}
    assert reasons == {
        "not_found",
        "access_denied",
        "throttled",
        "invalid",
        "timeout",
        "unavailable",
    }
    assert {o for name, o in values if name == "CallsEnded"} >= {"hangup", "prompt_error"}
    assert all(d["_aws"]["Timestamp"] == 1_780_000_000_123 for d in docs)
    assert all(v == 0 for v in values.values())  # zeros are written, so alarms see data


def test_counts_are_deltas_read_from_the_registry() -> None:
    m = Metrics(process_metrics=False)
    stats = {"hits": 5, "misses": 2, "fetches": 3}
    m.watch_prompt_cache(
        lambda: FakeCacheStats(stats["hits"], stats["misses"], stats["fetches"], 1, True, 0.0)
    )
    fmt = EmfFormatter(extra={"pid": 42})
    with m.call("twilio") as ended:
        ended.end_reason = "prompt_error"
    m.prompt_load_failed(PromptNotFound("no", assistant="esther"))
    live = m.call("asterisk")
    first = by_metric(fmt.documents(read_registry(m.registry), 1000))
    assert first["S3Calls", None] == 3
    assert first["PromptCacheHits", None] == 5
    assert first["PromptCacheMisses", None] == 2
    assert first["ActiveCalls", None] == 1
    assert first["PromptLoadFailures", "not_found"] == 1
    assert first["PromptLoadFailures", "timeout"] == 0
    assert first["CallsEnded", "prompt_error"] == 1

    stats.update(hits=9, fetches=4)
    m.prompt_load_failed(PromptNotFound("no", assistant="esther"))
    m.prompt_load_failed(PromptTimeout("slow", assistant="esther"))
    live.close("hangup")
    docs = fmt.documents(read_registry(m.registry), 2000)
    assert all(d["pid"] == 42 for d in docs)
    second = by_metric(docs)
    assert second["S3Calls", None] == 1
    assert second["PromptCacheHits", None] == 4
    assert second["PromptCacheMisses", None] == 0
    assert second["ActiveCalls", None] == 0  # a gauge: the value now, not a delta
    assert second["PromptLoadFailures", "not_found"] == 1
    assert second["PromptLoadFailures", "timeout"] == 1
    assert second["CallsEnded", "prompt_error"] == 0
    assert second["CallsEnded", "hangup"] == 1


def test_a_total_that_went_down_counts_from_zero() -> None:
    def reading(hits: float) -> OriginReading:
        return OriginReading(
            counts={"S3Calls": 0, "PromptCacheHits": hits, "PromptCacheMisses": 0},
            failures={},
            outcomes={},
            active_calls=0,
        )

    fmt = EmfFormatter()
    fmt.documents(reading(10), 1)
    assert by_metric(fmt.documents(reading(3), 2))["PromptCacheHits", None] == 3


async def test_writer_writes_a_set_each_interval_and_a_last_one_on_stop(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    m = Metrics(process_metrics=False)
    path = tmp_path / "emf.log"
    write = functools.partial(
        run_emf_writer,
        functools.partial(read_registry, m.registry),
        interval=60.0,
        path=str(path),
        clock=lambda: 1_780_000_000.5,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(write)
        m.call("twilio")
        await trio.sleep(61)
        # The write runs in a thread, which the autojump clock does not wait for.
        while True:
            if len(path.read_text().splitlines()) >= SET_SIZE:
                break
            await trio.sleep(0.01)
        first = [json.loads(line) for line in path.read_text().splitlines()]
        assert len(first) == SET_SIZE
        m.prompt_load_failed(PromptAccessDenied("denied", assistant="esther"))
        await trio.sleep(30)
        nursery.cancel_scope.cancel()
    lines = path.read_text().splitlines()
    docs = [json.loads(line) for line in lines]
    assert len(docs) == 2 * SET_SIZE  # one set at 60 s, the last one at the stop
    assert by_metric(first)["ActiveCalls", None] == 1
    last = by_metric(docs[len(first) :])
    assert last["PromptLoadFailures", "access_denied"] == 1
    assert all(d["_aws"]["Timestamp"] == 1_780_000_000_500 for d in docs)
    assert path.stat().st_mode & 0o777 == 0o600
