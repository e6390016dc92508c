"""``deploy/grafana/novavoice.json``: valid JSON, a well-formed dashboard, and every query on
a metric the daemon (or the worker parent) really exports."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.deploy.shared import DEPLOY, known_metric_names

DASHBOARD = DEPLOY / "grafana" / "novavoice.json"
# A PromQL identifier followed by a selector or a range: a metric name (functions are followed
# by "(" and label names by "=", so neither matches).
METRIC = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?=\{|\[)")


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p["targets"]]


def metrics_in(expr: str) -> set[str]:
    return set(METRIC.findall(expr))


def test_panels_are_well_formed() -> None:
    data = dashboard()
    assert data["uid"] and data["title"] == "NovaVoice"
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    for panel in data["panels"]:
        assert panel["targets"], panel["title"]
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
        assert panel["datasource"]["uid"] == "${datasource}"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids))


def test_every_query_uses_real_metrics() -> None:
    known = known_metric_names()
    for expr in exprs():
        used = metrics_in(expr)
        assert used, expr
        assert used <= known, (expr, used - known)


def test_the_metric_pattern_catches_a_wrong_name() -> None:
    # Guards the test above: a misspelt metric would be found and rejected.
    assert metrics_in('sum(rate(novavoice_calls_endd_total{job=~"$job"}[5m]))') == {
        "novavoice_calls_endd_total"
    }
    assert "novavoice_calls_endd_total" not in known_metric_names()


def test_dashboard_covers_the_origin_service_metrics() -> None:
    used = set().union(*(metrics_in(e) for e in exprs()))
    for name in (
        "novavoice_calls_active",
        "novavoice_prompt_cache_hits",
        "novavoice_prompt_cache_misses",
        "novavoice_prompt_cache_fetches",
        "novavoice_prompt_cache_errors",
        "novavoice_sonic_errors_total",
        "novavoice_calls_ended_total",
        "novavoice_event_loop_lag_seconds_bucket",
        "novavoice_workers_healthy",
    ):
        assert name in used, name
