"""The shared prompt cache: one actor per daemon between every call and the prompt store.

Behaviour, per assistant:

* **Fresh** for ``ttl`` seconds after a successful fetch or 304 revalidation: served from
  memory. An entry is fresh while ``now < fresh_until``; at the boundary it has expired.
* **Single-flight**: when it is missing or expired, the first request starts one fetch in
  the actor's own nursery and every concurrent request for that assistant waits for it.
  1,000 cold calls cost one S3 GET.
* **Revalidation**: an expired entry is re-read with ``If-None-Match: <etag>``; an unchanged
  prompt costs a 304 and no download.
* **Stale-if-error**: when a refresh fails (anything but "not found"), the last good prompt
  is served for at most ``stale_if_error`` seconds past its expiry, each such answer counted
  in ``stale_served``. Inside that window a failed refresh is retried at most every
  ``refresh_retry_interval`` seconds, so an S3 outage costs a trickle of GETs, not a flood.
* **Negative cache**: a definitive refusal (not found, access denied, no such bucket) is
  remembered for ``negative_ttl`` seconds, so a misconfigured assistant cannot hammer S3.
  Access denied is included because under the least-privilege read policy (no
  ``s3:ListBucket``) S3 reports a missing key as 403, not 404. A refusal is authoritative:
  the old prompt of a deleted assistant is dropped, not served stale.
* **Bounded**: at most ``max_entries`` assistants are kept, least recently used evicted.
* **Invalidation**: :meth:`PromptCache.invalidate` drops one assistant (the prompt admin
  calls it through the daemon's admin port after a publish), so the next request fetches
  the new version at once instead of after the TTL. A fetch already in flight for it may
  have read the old version: it still answers the requests that were waiting for it, but
  its result is not cached and later requests start a fresh fetch. A call that already
  holds its prompt keeps it: invalidation never reaches running calls.

Failures are values: a fetch's exception travels to that assistant's waiters only, each
receiving its own copy, and never into the actor's nursery. A waiting caller that is
cancelled simply stops listening; the shared fetch carries on for the others and still
fills the cache. Time is read only through :func:`trio.current_time`.

Why one file of over 400 lines: every request kind (get, the admission check, invalidate,
statistics) and every fetch completion read and change the same per-assistant entries in
the one actor task; split apart, each piece would need the actor's private state, and the
rules above could no longer be checked against one body of code.
"""

from __future__ import annotations

import contextlib
import enum
import math
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import outcome
import trio

from actors.assistant_names import AssistantName
from actors.errors import (
    PromptAccessDenied,
    PromptBucketNotFound,
    PromptError,
    PromptNotFound,
    PromptStoreError,
    PromptTimeout,
)
from actors.exception_groups import unwrap_lone_exception
from actors.prompt_store import NotModified, PromptStore, StoredPrompt

# Answers that say "this prompt is not there for us", as opposed to "S3 is unwell".
_DEFINITIVE = (PromptNotFound, PromptAccessDenied, PromptBucketNotFound)

_Reply = trio.MemorySendChannel[outcome.Outcome[StoredPrompt]]
_InvalidateReply = trio.MemorySendChannel[bool]


class PromptAvailability(enum.Enum):
    """What the cache can say about an assistant's prompt without waiting long."""

    PRESENT = "present"
    """Held (fresh, or stale but still servable)."""
    MISSING = "missing"
    """Definitively refused by the store (negative cache, or a lookup that just said so)."""
    UNKNOWN = "unknown"
    """Not known yet (cold and the bounded lookup did not finish, or the store is unwell)."""


@attrs.frozen(kw_only=True)
class PromptCacheStatistics:
    """A snapshot of the cache's counters (all counts since the cache opened)."""

    hits: int
    """Requests answered from a fresh entry."""
    misses: int
    """Requests that had to wait for a fetch (cold, expired, or joining one in flight)."""
    fetches: int
    """Store reads started (each one S3 GET)."""
    refreshes: int
    """Fetches that revalidated an entry we already held (sent ``If-None-Match``)."""
    not_modified: int
    """Refreshes answered 304 Not Modified."""
    stale_served: int
    """Requests answered with an expired prompt because its refresh failed."""
    errors: int
    """Fetches that failed (not-found included)."""
    negative_hits: int
    """Requests refused from the negative cache (not found, access denied, no bucket)
    without touching the store."""
    evictions: int
    """Entries dropped to respect ``max_entries``."""
    invalidations: int
    """Assistants dropped on request (:meth:`PromptCache.invalidate`) that were held or
    being fetched."""
    in_flight: int
    """Fetches running now."""
    entries: int
    """Assistants held now (including negative entries)."""


@attrs.define
class _Entry:
    prompt: StoredPrompt | None = None
    fresh_until: float = -math.inf
    stale_until: float = -math.inf
    not_found_until: float = -math.inf
    retry_after: float = -math.inf
    refusal: PromptError | None = None


@attrs.frozen
class _Get:
    assistant: str
    reply: _Reply


@attrs.frozen
class _Peek:
    """What is known about ``assistant`` right now, from memory only (never fetches)."""

    assistant: str
    reply: trio.MemorySendChannel[PromptAvailability]


@attrs.frozen
class _FetchDone:
    assistant: str
    previous: StoredPrompt | None
    result: outcome.Outcome[StoredPrompt | NotModified]
    fetch_id: int


@attrs.frozen
class _Invalidate:
    assistant: str
    reply: _InvalidateReply


_Message = _Get | _Peek | _FetchDone | _Invalidate


def _copy_error(exc: BaseException, assistant: str) -> PromptError:
    """A fresh exception per waiter: one object raised in many tasks would tangle tracebacks."""
    copy: PromptError
    if isinstance(exc, PromptError):
        try:
            copy = type(exc)(str(exc), assistant=exc.assistant, key=exc.key)
        except TypeError:  # a subclass with its own constructor
            copy = PromptStoreError(str(exc), assistant=exc.assistant, key=exc.key)
    else:
        copy = PromptStoreError(
            f"loading the prompt for assistant {assistant!r} failed: {type(exc).__name__}",
            assistant=assistant,
        )
    copy.__cause__ = exc
    return copy


@attrs.define(eq=False)
class _PromptCacheActor:
    """Owns all cache state; runs as one task. Only :class:`PromptCache` talks to it."""

    store: PromptStore
    ttl: float
    stale_if_error: float
    negative_ttl: float
    max_entries: int
    fetch_timeout: float
    refresh_retry_interval: float
    _inbox_send: trio.MemorySendChannel[_Message]
    _entries: OrderedDict[str, _Entry] = attrs.Factory(OrderedDict)
    _waiters: dict[str, list[_Reply]] = attrs.Factory(dict)
    # The id of each assistant's fetch in flight (ids only grow), so a fetch that an
    # invalidation superseded is recognised when it finishes; its waiters wait here.
    _fetch_ids: dict[str, int] = attrs.Factory(dict)
    _superseded: dict[tuple[str, int], list[_Reply]] = attrs.Factory(dict)
    _next_fetch_id: int = 0
    _fetch_nursery: trio.Nursery | None = None
    _counts: dict[str, int] = attrs.Factory(
        lambda: dict.fromkeys(
            (
                "hits",
                "misses",
                "fetches",
                "refreshes",
                "not_modified",
                "stale_served",
                "errors",
                "negative_hits",
                "evictions",
                "invalidations",
            ),
            0,
        )
    )

    def statistics(self) -> PromptCacheStatistics:
        return PromptCacheStatistics(
            **self._counts,
            in_flight=len(self._waiters) + len(self._superseded),
            entries=len(self._entries),
        )

    async def run(
        self,
        inbox: trio.MemoryReceiveChannel[_Message],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            async with trio.open_nursery() as fetches, inbox:
                self._fetch_nursery = fetches
                task_status.started()
                async for message in inbox:
                    if isinstance(message, _Get):
                        self._on_get(message)
                    elif isinstance(message, _Peek):
                        self._on_peek(message)
                    elif isinstance(message, _Invalidate):
                        self._on_invalidate(message)
                    else:
                        self._on_fetch_done(message)
        finally:
            # Nobody will answer these any more: tell them now rather than let them hang
            # until their own deadline. send_nowait never blocks (size-1 reply channels).
            pending = [(name, r) for name, r in self._waiters.items()] + [
                (name, r) for (name, _), r in self._superseded.items()
            ]
            for assistant, replies in pending:
                error = PromptStoreError(
                    f"prompt cache closed while loading assistant {assistant!r}",
                    assistant=assistant,
                )
                for reply in replies:
                    self._answer(reply, outcome.Error(_copy_error(error, assistant)))
            self._waiters.clear()
            self._superseded.clear()

    # --- requests -------------------------------------------------------------------

    def _on_get(self, request: _Get) -> None:
        now = trio.current_time()
        name = request.assistant
        entry = self._entries.get(name)
        if entry is not None:
            self._entries.move_to_end(name)
            if now < entry.not_found_until and entry.refusal is not None:
                self._counts["negative_hits"] += 1
                self._answer(request.reply, outcome.Error(_copy_error(entry.refusal, name)))
                return
            if entry.prompt is not None and now < entry.fresh_until:
                self._counts["hits"] += 1
                self._answer(request.reply, outcome.Value(entry.prompt))
                return
            if (
                entry.prompt is not None
                and now < entry.retry_after
                and now < entry.stale_until
                and name not in self._waiters
            ):
                # A refresh just failed: keep serving the last good copy until the retry.
                self._counts["stale_served"] += 1
                self._answer(request.reply, outcome.Value(entry.prompt))
                return
        self._counts["misses"] += 1
        waiting = self._waiters.get(name)
        if waiting is not None:
            waiting.append(request.reply)
            return
        self._waiters[name] = [request.reply]
        previous = entry.prompt if entry is not None else None
        self._counts["fetches"] += 1
        if previous is not None:
            self._counts["refreshes"] += 1
        assert self._fetch_nursery is not None
        fetch_id = self._next_fetch_id
        self._next_fetch_id += 1
        self._fetch_ids[name] = fetch_id
        self._fetch_nursery.start_soon(
            self._fetch, name, previous, fetch_id, name=f"prompt_fetch[{name}]"
        )

    def _on_peek(self, request: _Peek) -> None:
        now = trio.current_time()
        entry = self._entries.get(request.assistant)
        answer = PromptAvailability.UNKNOWN
        if entry is not None:
            if now < entry.not_found_until and entry.refusal is not None:
                answer = PromptAvailability.MISSING
            elif entry.prompt is not None and now < entry.stale_until:
                answer = PromptAvailability.PRESENT
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            request.reply.send_nowait(answer)

    def _on_invalidate(self, request: _Invalidate) -> None:
        name = request.assistant
        dropped = self._entries.pop(name, None) is not None
        waiting = self._waiters.pop(name, None)
        if waiting is not None:
            # The fetch in flight may have read the old version: its waiters still get its
            # answer, but nothing new joins it and its result is not cached.
            self._superseded[(name, self._fetch_ids.pop(name))] = waiting
            dropped = True
        if dropped:
            self._counts["invalidations"] += 1
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            request.reply.send_nowait(dropped)

    async def _fetch(self, name: str, previous: StoredPrompt | None, fetch_id: int) -> None:
        etag = previous.etag if previous is not None else None
        result: outcome.Outcome[StoredPrompt | NotModified]
        try:
            with trio.fail_after(self.fetch_timeout):
                value = await self.store.fetch(name, if_none_match=etag)
            result = outcome.Value(value)
        except trio.TooSlowError:
            result = outcome.Error(
                PromptTimeout(
                    f"prompt store did not answer for assistant {name!r} "
                    f"within {self.fetch_timeout:g} s",
                    assistant=name,
                )
            )
        except Exception as exc:
            # Every failure becomes a value for this assistant's waiters; nothing may
            # escape into the nursery, which sits above every call in the daemon.
            result = outcome.Error(exc)
        await self._inbox_send.send(_FetchDone(name, previous, result, fetch_id))

    # --- fetch results ----------------------------------------------------------------

    def _on_fetch_done(self, done: _FetchDone) -> None:
        now = trio.current_time()
        name = done.assistant
        superseded = self._superseded.pop((name, done.fetch_id), None)
        if superseded is not None:
            self._answer_superseded(done, superseded)
            return
        self._fetch_ids.pop(name, None)
        replies = self._waiters.pop(name, [])
        entry = self._entries.get(name)
        if entry is None:
            entry = self._entries[name] = _Entry()
        self._entries.move_to_end(name)
        result = done.result
        if isinstance(result, outcome.Value):
            value = result.value
            if isinstance(value, StoredPrompt):
                self._on_fetched(entry, value, replies, now)
            elif done.previous is not None:
                self._counts["not_modified"] += 1
                # The fetch carried the copy it revalidated, so an eviction meanwhile is harmless.
                self._on_fetched(entry, done.previous, replies, now)
            else:
                # A store bug (304 to an unconditional read) must not crash the actor.
                error = PromptStoreError(
                    f"store answered 304 to an unconditional read of {name!r}", assistant=name
                )
                self._on_failed(name, entry, error, replies, now)
        elif isinstance(result, outcome.Error):
            self._on_failed(name, entry, result.error, replies, now)
        self._evict()

    def _on_fetched(
        self, entry: _Entry, prompt: StoredPrompt, replies: list[_Reply], now: float
    ) -> None:
        entry.prompt = prompt
        entry.fresh_until = now + self.ttl
        entry.stale_until = entry.fresh_until + self.stale_if_error
        entry.not_found_until = -math.inf
        entry.refusal = None
        entry.retry_after = -math.inf
        for reply in replies:
            self._answer(reply, outcome.Value(prompt))

    def _on_failed(
        self,
        name: str,
        entry: _Entry,
        error: BaseException,
        replies: list[_Reply],
        now: float,
    ) -> None:
        self._counts["errors"] += 1
        if isinstance(error, _DEFINITIVE):
            entry.prompt = None
            entry.not_found_until = now + self.negative_ttl
            entry.refusal = error
        elif entry.prompt is not None and now < entry.stale_until:
            entry.retry_after = now + self.refresh_retry_interval
            self._counts["stale_served"] += len(replies)
            for reply in replies:
                self._answer(reply, outcome.Value(entry.prompt))
            return
        for reply in replies:
            self._answer(reply, outcome.Error(_copy_error(error, name)))

    def _answer_superseded(self, done: _FetchDone, replies: list[_Reply]) -> None:
        """Answer the waiters of a fetch an invalidation superseded; cache nothing."""
        result, name = done.result, done.assistant
        value = result.value if isinstance(result, outcome.Value) else None
        if isinstance(value, NotModified):
            value = done.previous
        if value is not None:
            for reply in replies:
                self._answer(reply, outcome.Value(value))
            return
        self._counts["errors"] += 1
        error = (
            result.error
            if isinstance(result, outcome.Error)
            else PromptStoreError(
                f"store answered 304 to an unconditional read of {name!r}", assistant=name
            )
        )
        for reply in replies:
            self._answer(reply, outcome.Error(_copy_error(error, name)))

    def _evict(self) -> None:
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
            self._counts["evictions"] += 1

    @staticmethod
    def _answer(reply: _Reply, result: outcome.Outcome[StoredPrompt]) -> None:
        # A closed reply channel means the caller gave up (cancelled or timed out).
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            reply.send_nowait(result)


@attrs.define(eq=False)
class PromptCache:
    """Handle on the shared prompt cache actor; cheap to pass to every call."""

    _inbox: trio.MemorySendChannel[_Message]
    _actor: _PromptCacheActor

    async def get(self, assistant: AssistantName) -> StoredPrompt:
        """Return ``assistant``'s prompt (a validated name), fetching it if needed.

        Raises only :class:`~actors.errors.PromptError` subclasses. Put a
        deadline around it (see :class:`actors.prompt_fetch.PromptFetcher`): cancelling
        this call never cancels the shared fetch.
        """
        reply_send, reply_receive = trio.open_memory_channel[outcome.Outcome[StoredPrompt]](1)
        with reply_receive:
            try:
                await self._inbox.send(_Get(assistant, reply_send))
                result = await reply_receive.receive()
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.EndOfChannel):
                raise PromptStoreError(
                    f"prompt cache is closed; cannot load assistant {assistant!r}",
                    assistant=assistant,
                ) from None
        return result.unwrap()

    async def check(self, assistant: AssistantName, deadline: float) -> PromptAvailability:
        """Whether ``assistant``'s prompt exists, as far as can be told within ``deadline``.

        First a peek at memory (the negative cache answers MISSING, a held prompt PRESENT),
        never blocking on a full inbox. If that says nothing and ``deadline > 0``, an
        ordinary :meth:`get` for at most ``deadline`` seconds: it warms the cache for the
        call that follows, and giving up never cancels the shared fetch. Only a definitive
        refusal (not found, access denied, no bucket) is MISSING; anything else unknown is
        UNKNOWN. Used before accepting a carrier's upgrade, to refuse it with 404.
        """
        reply_send, reply_receive = trio.open_memory_channel[PromptAvailability](1)
        with reply_receive:
            try:
                self._inbox.send_nowait(_Peek(assistant, reply_send))
                known = await reply_receive.receive()
            except (
                trio.WouldBlock,
                trio.BrokenResourceError,
                trio.ClosedResourceError,
                trio.EndOfChannel,
            ):
                known = PromptAvailability.UNKNOWN
        if known is not PromptAvailability.UNKNOWN or deadline <= 0:
            return known
        with trio.move_on_after(deadline):
            try:
                await self.get(assistant)
            except _DEFINITIVE:
                return PromptAvailability.MISSING
            except PromptError:
                return PromptAvailability.UNKNOWN
            return PromptAvailability.PRESENT
        return PromptAvailability.UNKNOWN

    async def invalidate(self, assistant: AssistantName) -> bool:
        """Drop ``assistant`` (a validated name) from the cache; its next request fetches it
        from the store.

        Returns whether anything was held or being fetched for it. Calls that already hold
        their prompt keep it. Raises :class:`~actors.errors.PromptStoreError` when the cache
        is closed.
        """
        reply_send, reply_receive = trio.open_memory_channel[bool](1)
        with reply_receive:
            try:
                await self._inbox.send(_Invalidate(assistant, reply_send))
                return await reply_receive.receive()
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.EndOfChannel):
                raise PromptStoreError(
                    f"prompt cache is closed; cannot invalidate assistant {assistant!r}",
                    assistant=assistant,
                ) from None

    def statistics(self) -> PromptCacheStatistics:
        """A snapshot of the cache's counters."""
        return self._actor.statistics()


@asynccontextmanager
async def open_prompt_cache(
    store: PromptStore,
    *,
    ttl: float,
    stale_if_error: float,
    negative_ttl: float,
    max_entries: int,
    fetch_timeout: float,
    refresh_retry_interval: float,
    inbox_size: int = 64,
) -> AsyncIterator[PromptCache]:
    """Run the prompt cache actor for the duration of the ``async with`` block.

    Durations are seconds. ``fetch_timeout`` bounds one store read (its waiters get
    :class:`~actors.errors.PromptTimeout`); the daemon derives it from the prompt-load
    budget (:attr:`actors.prompt_budget.PromptLoadBudget.cache_fetch_timeout`).
    ``inbox_size`` bounds queued requests, so a burst applies backpressure to callers
    instead of growing memory.
    """
    if ttl < 0 or stale_if_error < 0 or negative_ttl < 0 or max_entries < 1:
        raise ValueError("cache durations must be >= 0 and max_entries >= 1")
    inbox_send, inbox_receive = trio.open_memory_channel[_Message](inbox_size)
    actor = _PromptCacheActor(
        store,
        ttl,
        stale_if_error,
        negative_ttl,
        max_entries,
        fetch_timeout,
        refresh_retry_interval,
        inbox_send,
    )
    # The actor turns every failure into a value, so a lone exception here is the caller's
    # own, raised in the block: give it back as raised, not wrapped in a group.
    with unwrap_lone_exception():
        async with trio.open_nursery() as nursery:
            await nursery.start(actor.run, inbox_receive)
            try:
                yield PromptCache(inbox_send, actor)
            finally:
                nursery.cancel_scope.cancel(reason="prompt cache closed")
