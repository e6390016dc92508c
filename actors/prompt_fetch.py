"""The per-call prompt fetch: ask the shared cache for a validated name, under a deadline.

A call channel runs :meth:`PromptFetcher.fetch` once, when the call starts; the prompt and its
version (ETag, VersionId) are then fixed for the whole call and logged with it through
:func:`prompt_log_fields`. Every failure is a :class:`~actors.errors.PromptError` of this
call only: the cache and the other calls carry on.
"""

from __future__ import annotations

from typing import Protocol

import attrs
import trio

from actors.assistant_names import AssistantName
from actors.errors import PromptTimeout
from actors.prompt_cache import PromptAvailability
from actors.prompt_store import StoredPrompt


class PromptSource(Protocol):
    """Anything that answers prompt requests (the :class:`~actors.prompt_cache.PromptCache`)."""

    async def get(self, assistant: AssistantName) -> StoredPrompt:
        """Return ``assistant``'s prompt or raise a :class:`~actors.errors.PromptError`."""
        ...

    async def check(self, assistant: AssistantName, deadline: float) -> PromptAvailability:
        """Whether the prompt exists, as far as can be told within ``deadline`` seconds."""
        ...


@attrs.frozen
class PromptFetcher:
    """Loads one call's prompt from ``source`` within ``timeout`` seconds.

    The deadline is part of the fetcher (daemon configuration), not of each call site, so
    every call applies the same budget (:attr:`~actors.prompt_budget.PromptLoadBudget.call_timeout`,
    from ``PROMPT_LOAD_TIMEOUT_MS``).
    """

    source: PromptSource
    timeout: float

    async def fetch(self, assistant: AssistantName) -> StoredPrompt:
        """Return ``assistant``'s prompt for this call, or raise a PromptError.

        The name's type says it was validated at the call boundary
        (:func:`~actors.assistant_names.validate_assistant_name`). Running out of time raises
        :class:`~actors.errors.PromptTimeout` for this call only; the shared fetch it was
        waiting on continues for the other calls.
        """
        try:
            with trio.fail_after(self.timeout):
                return await self.source.get(assistant)
        except trio.TooSlowError:
            raise PromptTimeout(
                f"prompt for assistant {assistant!r} not loaded within {self.timeout:g} s",
                assistant=assistant,
            ) from None

    async def check(self, assistant: AssistantName, deadline: float) -> PromptAvailability:
        """Whether ``assistant``'s prompt is known to exist, be missing, or neither, within
        ``deadline`` seconds (the admission check before a carrier's upgrade)."""
        return await self.source.check(assistant, deadline)


def prompt_log_fields(prompt: StoredPrompt) -> dict[str, str | int | None]:
    """What a call logs about its prompt: identity and version, never the text."""
    return {
        "assistant": prompt.assistant,
        "prompt_key": prompt.key,
        "prompt_etag": prompt.etag,
        "prompt_version_id": prompt.version_id,
        "prompt_bytes": prompt.size,
    }
