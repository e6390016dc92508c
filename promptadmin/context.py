"""What every request handler of the admin shares: one :class:`AdminContext` per app."""

from __future__ import annotations

import time
from collections.abc import Callable

import attrs

from promptadmin.async_versions import AsyncPromptVersions
from promptadmin.auth import AdminTokens, SessionStore
from promptadmin.metrics import AdminMetrics
from promptadmin.service import AdminService


@attrs.define(eq=False)
class AdminContext:
    """The admin's parts, built by :func:`promptadmin.app.build_app`'s caller."""

    versions: AsyncPromptVersions
    service: AdminService
    metrics: AdminMetrics
    tokens: AdminTokens
    sessions: SessionStore = attrs.Factory(SessionStore)
    clock: Callable[[], float] = time.monotonic
    """For session expiry (tests may pass their own)."""

    @property
    def body_limit(self) -> int:
        """Largest request body: a definition at its size limit, JSON-escaped, plus room."""
        return self.versions.store.max_bytes * 6 + 16 * 1024
