"""An in-memory :class:`~actors.prompt_store.PromptStore` for tests and experiments.

It behaves like the S3 store as the cache sees it (versions, ETags, 304s, not-found,
injected failures) and waits with :func:`trio.sleep`, so the autojump clock drives its
latency with no threads involved (python-trio/trio#456 forbids mixing the two).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import attrs
import trio

from actors.assistant_names import prompt_key
from actors.errors import PromptNotFound
from actors.prompt_store import NotModified, StoredPrompt

FailureFactory = Callable[[str, str], Exception]
"""Builds the exception to raise for ``(assistant, key)``: a fresh one each time."""


@attrs.define(eq=False)
class FakePromptStore:
    """Async fake store. ``latency`` seconds pass (in trio time) on every fetch."""

    prefix: str = "assistants/"
    latency: float = 0.0
    fetch_count: int = 0
    """Fetches started, successful or not (what an S3 bill would count)."""
    not_modified_count: int = 0
    """Fetches answered with 304."""
    _objects: dict[str, StoredPrompt] = attrs.Factory(dict)
    _versions: dict[str, int] = attrs.Factory(dict)
    _failures: dict[str | None, FailureFactory] = attrs.Factory(dict)

    def put(self, assistant: str, text: str) -> StoredPrompt:
        """Store a new version of ``assistant``'s prompt and return it."""
        key = prompt_key(self.prefix, assistant)
        version = self._versions.get(assistant, 0) + 1
        self._versions[assistant] = version
        data = text.encode("utf-8")
        prompt = StoredPrompt(
            assistant=assistant,
            key=key,
            text=text,
            etag=f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"',
            version_id=f"v{version}",
            size=len(data),
        )
        self._objects[assistant] = prompt
        return prompt

    def delete(self, assistant: str) -> None:
        """Remove ``assistant``'s prompt; later fetches raise PromptNotFound."""
        self._objects.pop(assistant, None)

    def fail(self, assistant: str | None, factory: FailureFactory) -> None:
        """Make fetches of ``assistant`` (or of every assistant, with ``None``) raise."""
        self._failures[assistant] = factory

    def heal(self, assistant: str | None = None) -> None:
        """Undo :meth:`fail` for ``assistant`` (or the catch-all with ``None``)."""
        self._failures.pop(assistant, None)

    async def fetch(
        self, assistant: str, *, if_none_match: str | None = None
    ) -> StoredPrompt | NotModified:
        """Like the S3 store: sleep ``latency``, then answer, 304 or raise."""
        key = prompt_key(self.prefix, assistant)
        self.fetch_count += 1
        await trio.sleep(self.latency)
        factory = self._failures.get(assistant) or self._failures.get(None)
        if factory is not None:
            raise factory(assistant, key)
        prompt = self._objects.get(assistant)
        if prompt is None:
            raise PromptNotFound(
                f"no prompt for assistant {assistant!r}", assistant=assistant, key=key
            )
        if if_none_match is not None and if_none_match == prompt.etag:
            self.not_modified_count += 1
            return NotModified(assistant=assistant, key=key, etag=prompt.etag)
        return prompt
