"""The prompt admin's Prometheus metrics, on a private registry (served at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class AdminMetrics:
    """Counts of the admin's writes and refusals."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.publishes = Counter(
            "novavoice_admin_publishes", "Assistant versions published.", registry=r
        )
        self.rollbacks = Counter(
            "novavoice_admin_rollbacks", "Rollbacks (each one new version).", registry=r
        )
        self.validation_failures = Counter(
            "novavoice_admin_validation_failures",
            "Publishes and rollbacks refused because the definition is invalid.",
            registry=r,
        )
        self.conflicts = Counter(
            "novavoice_admin_conflicts",
            "Writes refused because the assistant changed since it was read (412).",
            registry=r,
        )
        self.refresh_failures = Counter(
            "novavoice_admin_daemon_refresh_failures",
            "Daemons that did not confirm a refresh after a write.",
            registry=r,
        )
