"""The versioned prompt store for trio code: :class:`AsyncPromptVersions`.

:class:`~promptadmin.versions.PromptVersions` is synchronous because boto3 blocks; the admin
server and its API run each of its calls in a worker thread through this wrapper, under a
capacity limiter. It adds no behaviour of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

import attrs
import trio

from promptadmin.version_records import AssistantSummary, StoredVersion, VersionInfo
from promptadmin.versions import PromptVersions

__all__ = ["AsyncPromptVersions"]

P = ParamSpec("P")
T = TypeVar("T")


@attrs.define(eq=False)
class AsyncPromptVersions:
    """:class:`PromptVersions` for trio code: each call runs in a worker thread.

    Calls are not abandoned on cancellation: a write that reached S3 finishes and its
    outcome is known before the caller's cancellation proceeds. ``limiter`` bounds the
    threads (``CapacityLimiter(1)`` under moto, which is not thread-safe).
    """

    store: PromptVersions
    limiter: trio.CapacityLimiter = attrs.Factory(lambda: trio.CapacityLimiter(4))

    async def _run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        def call() -> T:
            return fn(*args, **kwargs)

        return await trio.to_thread.run_sync(call, limiter=self.limiter)

    async def check_versioning(self) -> None:
        """See :meth:`PromptVersions.check_versioning`."""
        await self._run(self.store.check_versioning)

    async def list_assistants(self) -> list[AssistantSummary]:
        """See :meth:`PromptVersions.list_assistants`."""
        return await self._run(self.store.list_assistants)

    async def get(self, name: str, version_id: str | None = None) -> StoredVersion:
        """See :meth:`PromptVersions.get`."""
        return await self._run(self.store.get, name, version_id)

    async def history(self, name: str, *, limit: int | None = None) -> list[VersionInfo]:
        """See :meth:`PromptVersions.history`."""
        return await self._run(self.store.history, name, limit=limit)

    async def put(
        self, name: str, body: bytes, *, author: str, message: str, if_match: str | None
    ) -> StoredVersion:
        """See :meth:`PromptVersions.put`."""
        return await self._run(
            self.store.put, name, body, author=author, message=message, if_match=if_match
        )

    async def rollback(
        self, name: str, version_id: str, *, author: str, message: str, if_match: str | None
    ) -> StoredVersion:
        """See :meth:`PromptVersions.rollback`."""
        return await self._run(
            self.store.rollback,
            name,
            version_id,
            author=author,
            message=message,
            if_match=if_match,
        )
