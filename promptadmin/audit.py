"""The append-only audit log: one JSON line per write, whoever made it and however.

Each line records ``time`` (UTC, ISO 8601), ``who`` (the admin's name), ``what``
(``publish``, ``create`` or ``rollback``), ``name`` (the assistant), ``version`` (the version
written), ``previous`` (the version it replaced, ``null`` for a new assistant), and for a
rollback ``rollback_of`` (the version copied). The file is opened in append mode for each
line (``O_APPEND``: lines from concurrent writers never interleave, and a rotated file is
picked up), created with mode 0600, and never truncated or rewritten by the admin.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import attrs
import trio

AuditAction = Literal["publish", "create", "rollback"]


@attrs.frozen(kw_only=True)
class AuditEntry:
    """One write, as recorded."""

    who: str
    what: AuditAction
    name: str
    version: str
    previous: str | None
    rollback_of: str | None = None
    time: str = attrs.field(factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def to_json(self) -> dict[str, object]:
        """The JSON object written as one line."""
        record: dict[str, object] = {
            "time": self.time,
            "who": self.who,
            "what": self.what,
            "name": self.name,
            "version": self.version,
            "previous": self.previous,
        }
        if self.rollback_of is not None:
            record["rollback_of"] = self.rollback_of
        return record


@attrs.define(eq=False)
class AuditLog:
    """Appends :class:`AuditEntry` lines to ``path`` (file I/O in a worker thread)."""

    path: Path
    _lock: trio.Lock = attrs.Factory(trio.Lock)

    def check_writable(self) -> None:
        """Create the file if needed and fail now, not at the first write, if it cannot be."""
        self._append(b"")

    async def record(self, entry: AuditEntry) -> None:
        """Append one entry."""
        line = json.dumps(entry.to_json(), ensure_ascii=False, separators=(",", ":")) + "\n"
        async with self._lock:
            await trio.to_thread.run_sync(self._append, line.encode("utf-8"))

    def _append(self, data: bytes) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            if data:
                os.write(fd, data)
        finally:
            os.close(fd)

    def read(self) -> list[dict[str, object]]:
        """Every entry so far (for tests and operators' tools)."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text("utf-8").splitlines() if line]
