"""What the deployment tests compare the artifacts against: the daemon's real names.

Metric names come from a live :class:`~sessions.metrics.Metrics` (with a prompt cache
statistics source attached, so the ``novavoice_prompt_cache_*`` gauges appear), never from a
hand-kept list; settings names from :mod:`sessions.config`'s own source.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import attrs
import pytest

from actors.prompt_cache import PromptCacheStatistics
from sessions import config
from sessions.metrics import Metrics

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"

# Gauges of the `serve --workers N` parent process (issue 12, built alongside this work).
WORKER_GAUGES = frozenset({"novavoice_workers_healthy", "novavoice_workers_configured"})


def daemon_metric_names() -> frozenset[str]:
    """Every sample name the daemon's /metrics can export (``_bucket``, ``_total``... included)."""
    metrics = Metrics(process_metrics=True)
    zeros = {f.name: 0 for f in attrs.fields(PromptCacheStatistics)}
    metrics.watch_prompt_cache(lambda: PromptCacheStatistics(**zeros))
    names: set[str] = set()
    for family in metrics.registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return frozenset(names)


def known_metric_names() -> frozenset[str]:
    """The daemon's metrics plus the worker parent's gauges."""
    return daemon_metric_names() | WORKER_GAUGES


def settings_names() -> frozenset[str]:
    """Every variable :mod:`sessions.config` reads (region variables included)."""
    names: set[str] = set()
    for _, leaf in config.variables():
        names.add(leaf.metadata[config.ENV])
        if leaf.metadata[config.FALLBACK]:
            names.add(leaf.metadata[config.FALLBACK])
    return frozenset(names)


def require_tool(name: str) -> str:
    """Path of command ``name``; missing fails under CI (CI=true) and skips elsewhere."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (.ci/run installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path
