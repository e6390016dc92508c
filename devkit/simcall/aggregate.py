"""Aggregate many :class:`~devkit.simcall.report.CallReport` into load-test figures.

``summarize`` gives the run's totals and percentiles; latencies are taken over the
*healthy* calls only (no misbehaviour planned), so faults injected in some calls show up
as a difference in the healthy calls' figures, not as noise mixed into them.
``timeline`` buckets the run by second for the live progress line and the PNG.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable, Sequence
from typing import Any

from devkit.simcall.report import CallReport, percentile

__all__ = ["distribution", "summarize", "timeline"]

QUANTILES = (50, 90, 99)


def distribution(values: Iterable[float | None]) -> dict[str, float | int | None]:
    """count, p50, p90, p99 and max of the non-``None`` values."""
    present = [v for v in values if v is not None]
    out: dict[str, float | int | None] = {"count": len(present)}
    for q in QUANTILES:
        out[f"p{q}"] = percentile(present, q)
    out["max"] = max(present) if present else None
    return out


def summarize(reports: Sequence[CallReport]) -> dict[str, Any]:
    """Totals, how calls ended, and latency distributions (healthy calls) of a run."""
    healthy = [r for r in reports if r.misbehaviour == "none"]
    outcomes = collections.Counter(r.outcome for r in reports)
    codes = collections.Counter(str(r.close_code) for r in reports if r.close_code is not None)
    statuses = collections.Counter(str(r.http_status) for r in reports if r.http_status)
    return {
        "calls": len(reports),
        "ok": sum(r.ok for r in reports),
        "failed": sum(not r.ok for r in reports),
        "healthy_calls": len(healthy),
        "healthy_failed": sum(not r.ok for r in healthy),
        "misbehaving_calls": collections.Counter(
            r.misbehaviour for r in reports if r.misbehaviour != "none"
        ),
        "outcomes": dict(outcomes),
        "close_codes": dict(codes),
        "http_statuses": dict(statuses),
        "admission_s": distribution(r.admission_s for r in healthy),
        "first_audio_s": distribution(r.first_audio_s for r in healthy),
        "reply_latency_s": distribution(t for r in healthy for t in r.reply_latencies_s),
        "barge_in_reaction_s": distribution(t for r in healthy for t in r.barge_in_reactions_s),
        "barge_ins": sum(r.barge_ins for r in healthy),
        "barge_ins_missed": sum(r.barge_ins_missed for r in healthy),
        "interarrival_p99_ms": distribution(r.interarrival_p99_ms for r in healthy),
        "jitter_ms": distribution(r.jitter_ms for r in healthy),
        "underruns": sum(r.underruns for r in healthy),
        "underrun_s": sum(r.underrun_s for r in healthy),
        "no_reply_turns": sum(r.no_reply_turns for r in healthy),
        "frames_sent": sum(r.frames_sent for r in reports),
        "frames_received": sum(r.frames_received for r in reports),
        "healthy_frames_unsent": sum(r.frames_unsent for r in healthy),
        "frames_late": sum(r.frames_late for r in reports),
        "call_seconds": sum(r.duration_s for r in reports if r.admission_s is not None),
    }


def timeline(reports: Sequence[CallReport], *, origin: float, end: float) -> list[dict[str, Any]]:
    """Per-second buckets from ``origin`` to ``end``: calls active at the bucket's end,
    calls ended and failed within it, and the p50/p99 of time to first audio over the
    healthy calls ended so far."""
    seconds = max(1, math.ceil(end - origin))
    rows: list[dict[str, Any]] = []
    ordered = sorted(reports, key=lambda r: r.ended_at)
    first_audio: list[float] = []
    i = 0
    for second in range(seconds):
        hi = origin + second + 1
        ended = failed = 0
        while i < len(ordered) and ordered[i].ended_at < hi:
            r = ordered[i]
            ended += 1
            failed += not r.ok
            if r.first_audio_s is not None and r.misbehaviour == "none":
                first_audio.append(r.first_audio_s)
            i += 1
        active = sum(1 for r in reports if r.started_at <= hi < r.ended_at)
        rows.append(
            {
                "t": second + 1,
                "active": active,
                "ended": ended,
                "failed": failed,
                "first_audio_p50_s": percentile(first_audio, 50),
                "first_audio_p99_s": percentile(first_audio, 99),
            }
        )
    return rows
