"""Settings of the worker processes and the CloudWatch EMF writer."""

from __future__ import annotations

import os

import pytest

from actors.errors import ConfigError
from sessions.config import settings_from_mapping


def test_workers_is_a_count_or_auto_for_one_per_core() -> None:
    assert settings_from_mapping({}).listen.workers == 1
    assert settings_from_mapping({"NOVAVOICE_WORKERS": "3"}).listen.workers == 3
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert settings_from_mapping({"NOVAVOICE_WORKERS": "auto"}).listen.workers == cores


def test_emf_settings_and_units() -> None:
    s = settings_from_mapping(
        {
            "METRICS_CLOUDWATCH_EMF": "1",
            "METRICS_CLOUDWATCH_INTERVAL_MS": "15000",
            "METRICS_CLOUDWATCH_EMF_PATH": "/var/log/novavoice/emf.log",
        }
    )
    assert (s.metrics.cloudwatch_emf, s.metrics.cloudwatch_emf_interval) == (True, 15.0)
    assert s.metrics.cloudwatch_emf_path == "/var/log/novavoice/emf.log"
    assert settings_from_mapping({}).metrics.cloudwatch_emf is False
    assert settings_from_mapping({}).metrics.cloudwatch_emf_interval == 60.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("NOVAVOICE_WORKERS", "0"),
        ("NOVAVOICE_WORKERS", "many"),
        ("METRICS_CLOUDWATCH_EMF", "maybe"),
        ("METRICS_CLOUDWATCH_INTERVAL_MS", "0"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_mapping({name: value})
    assert str(info.value).startswith(f"{name}=")
