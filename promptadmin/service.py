"""The admin's write path, shared by the JSON API and the web page.

A publish or rollback is: the conditional write through :class:`PromptVersions` (which
validates and records the author in the S3 metadata), the audit line, the metrics, and the
refresh of every daemon. Refusals are :class:`~actors.errors.PromptRejected` (invalid) and
:class:`~actors.errors.PromptConflict` (changed since read); both leave S3 untouched.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterator

import attrs

from actors.errors import PromptConflict, PromptNotFound, PromptRejected
from promptadmin.async_versions import AsyncPromptVersions
from promptadmin.audit import AuditAction, AuditEntry, AuditLog
from promptadmin.metrics import AdminMetrics
from promptadmin.notify import DaemonNotifier, RefreshResult
from promptadmin.versions import StoredVersion

RESERVED_NAMES = frozenset({"admin", "validate"})
"""Names the API's paths use (``/api/v1/prompts/admin``, ``.../validate``)."""


@attrs.frozen(kw_only=True)
class WriteResult:
    """What a publish or rollback did."""

    action: AuditAction
    version: StoredVersion
    previous: str | None
    refreshed: list[RefreshResult]

    def to_json(self) -> dict[str, object]:
        """The API's answer to a write."""
        return {
            "name": self.version.name,
            "action": self.action,
            "version": self.version.version_id,
            "etag": self.version.etag,
            "previous": self.previous,
            "author": self.version.author,
            "message": self.version.message,
            "rollback_of": self.version.metadata.rollback_of,
            "daemons": [r.to_json() for r in self.refreshed],
            "confirmed": sum(r.confirmed for r in self.refreshed),
        }


@attrs.define(eq=False)
class AdminService:
    """Publishes and rolls back through the versioned store, then audits and notifies."""

    versions: AsyncPromptVersions
    audit: AuditLog
    metrics: AdminMetrics
    notifier: DaemonNotifier

    async def _current_version(self, name: str) -> str | None:
        try:
            return (await self.versions.get(name)).version_id
        except PromptNotFound:
            return None

    async def publish(
        self, name: str, body: bytes, *, author: str, message: str, if_match: str | None
    ) -> WriteResult:
        """Publish ``body`` over the version whose ETag is ``if_match`` (``None``: new)."""
        if name in RESERVED_NAMES:
            raise PromptRejected(
                f"{name!r} is reserved by the admin's paths; choose another name",
                assistant=name,
            )
        previous = await self._current_version(name) if if_match is not None else None
        with self._counting_refusals():
            stored = await self.versions.put(
                name, body, author=author, message=message, if_match=if_match
            )
        self.metrics.publishes.inc()
        action: AuditAction = "create" if if_match is None else "publish"
        return await self._after_write(action, stored, author, previous)

    async def rollback(
        self, name: str, version_id: str, *, author: str, message: str, if_match: str | None
    ) -> WriteResult:
        """Publish ``version_id``'s bytes again as the new current version."""
        previous = await self._current_version(name)
        with self._counting_refusals():
            stored = await self.versions.rollback(
                name, version_id, author=author, message=message, if_match=if_match
            )
        self.metrics.rollbacks.inc()
        return await self._after_write("rollback", stored, author, previous)

    @contextlib.contextmanager
    def _counting_refusals(self) -> Iterator[None]:
        """Count a write the validator or a concurrent edit refused, and let it propagate."""
        try:
            yield
        except PromptRejected as exc:
            if exc.report is not None:
                self.metrics.validation_failures.inc()
            raise
        except PromptConflict:
            self.metrics.conflicts.inc()
            raise

    async def _after_write(
        self, action: AuditAction, stored: StoredVersion, author: str, previous: str | None
    ) -> WriteResult:
        await self.audit.record(
            AuditEntry(
                who=author,
                what=action,
                name=stored.name,
                version=stored.version_id,
                previous=previous,
                rollback_of=stored.metadata.rollback_of,
            )
        )
        refreshed = await self.notifier.refresh(stored.name)
        for result in refreshed:
            if not result.confirmed:
                self.metrics.refresh_failures.inc()
        return WriteResult(action=action, version=stored, previous=previous, refreshed=refreshed)


def unified_diff(old: str, new: str, old_label: str, new_label: str) -> list[str]:
    """Lines of a unified diff from ``old`` to ``new`` (no trailing newlines)."""
    return list(
        difflib.unified_diff(
            old.splitlines(),
            new.splitlines(),
            fromfile=old_label,
            tofile=new_label,
            lineterm="",
        )
    )
