"""The shared prompt cache actor, driven by the autojump clock over the fake store."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from actors.assistant_names import AssistantName
from actors.errors import (
    InvalidAssistantName,
    PromptAccessDenied,
    PromptError,
    PromptNotFound,
    PromptStoreError,
    PromptThrottled,
    PromptTimeout,
)
from actors.prompt_cache import PromptAvailability
from actors.prompt_store import StoredPrompt
from devkit.fake_prompt_store import FakePromptStore

from .conftest import NEGATIVE, STALE, TTL, cache_over

ESTHER = AssistantName("esther")


def throttled(assistant: str, key: str) -> Exception:
    return PromptThrottled("SlowDown", assistant=assistant, key=key)


async def test_thousand_concurrent_cold_requests_cost_one_fetch(
    store: FakePromptStore, autojump_clock: trio.testing.MockClock
) -> None:
    results: list[StoredPrompt] = []

    async def one() -> None:
        results.append(await cache.get(ESTHER))

    async with cache_over(store) as cache:
        async with trio.open_nursery() as nursery:
            for _ in range(1000):
                nursery.start_soon(one)
            await trio.testing.wait_all_tasks_blocked()
            assert cache.statistics().in_flight == 1
        stats = cache.statistics()

    assert store.fetch_count == 1
    assert len(results) == 1000
    assert {r.version_id for r in results} == {"v1"}
    assert stats.fetches == 1
    assert stats.misses == 1000
    assert stats.hits == 0
    assert stats.in_flight == 0


async def test_fresh_until_the_ttl_boundary_then_revalidated_with_304(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakePromptStore(latency=0.0)
    first = store.put("esther", "v1 text")
    async with cache_over(store) as cache:
        assert await cache.get(ESTHER) == first
        fetched_at = trio.current_time()

        await trio.sleep_until(fetched_at + TTL - 0.001)
        assert await cache.get(ESTHER) == first
        assert store.fetch_count == 1

        await trio.sleep_until(fetched_at + TTL)
        assert trio.current_time() == fetched_at + TTL
        assert await cache.get(ESTHER) == first
        assert store.fetch_count == 2
        assert store.not_modified_count == 1
        stats = cache.statistics()
    assert (stats.hits, stats.misses, stats.refreshes, stats.not_modified) == (1, 2, 1, 1)


async def test_expired_entry_picks_up_a_new_version(
    store: FakePromptStore, autojump_clock: trio.testing.MockClock
) -> None:
    async with cache_over(store) as cache:
        assert (await cache.get(ESTHER)).version_id == "v1"
        store.put("esther", "You are Esther, now brisker.")
        # Still fresh: the cached version is served, the store is not asked.
        assert (await cache.get(ESTHER)).version_id == "v1"
        await trio.sleep(TTL)
        updated = await cache.get(ESTHER)
        stats = cache.statistics()
    assert updated.version_id == "v2"
    assert updated.text == "You are Esther, now brisker."
    assert stats.refreshes == 1
    assert stats.not_modified == 0


async def test_stale_if_error_serves_last_good_prompt_within_its_window(
    store: FakePromptStore, autojump_clock: trio.testing.MockClock
) -> None:
    async with cache_over(store, refresh_retry_interval=1.0) as cache:
        good = await cache.get(ESTHER)
        expires = trio.current_time() + TTL
        store.fail("esther", throttled)

        await trio.sleep_until(expires)
        assert await cache.get(ESTHER) == good  # refresh failed, stale copy served
        fetches = store.fetch_count
        assert await cache.get(ESTHER) == good  # within the retry interval: no new GET
        assert store.fetch_count == fetches
        await trio.sleep(1.0)
        assert await cache.get(ESTHER) == good  # retried, failed again, still stale
        assert store.fetch_count == fetches + 1
        stats = cache.statistics()
        assert stats.stale_served == 3
        assert stats.errors == 2

        # The window is bounded: from expiry + STALE on, the failure reaches the caller.
        await trio.sleep_until(expires + STALE)
        with pytest.raises(PromptThrottled) as info:
            await cache.get(ESTHER)
        assert info.value.assistant == "esther"
        assert isinstance(info.value.__cause__, PromptThrottled)

        store.heal("esther")
        assert await cache.get(ESTHER) == good
        assert cache.statistics().stale_served == 3


async def test_stale_copy_is_never_served_without_a_failure(
    store: FakePromptStore, autojump_clock: trio.testing.MockClock
) -> None:
    async with cache_over(store) as cache:
        await cache.get(ESTHER)
        store.put("esther", "newer")
        await trio.sleep(TTL)
        assert (await cache.get(ESTHER)).text == "newer"
        assert cache.statistics().stale_served == 0


async def test_not_found_is_negatively_cached_for_a_short_while(
    store: FakePromptStore, autojump_clock: trio.testing.MockClock
) -> None:
    async with cache_over(store) as cache:
        for _ in range(50):
            with pytest.raises(PromptNotFound):
                await cache.get(AssistantName("ghost"))
        assert store.fetch_count == 1
        assert cache.statistics().negative_hits == 49

        store.put("ghost", "Now I exist.")
        await trio.sleep(NEGATIVE - 0.01)
        with pytest.raises(PromptNotFound):
            await cache.get(AssistantName("ghost"))
        await trio.sleep(0.01)
        assert (await cache.get(AssistantName("ghost"))).text == "Now I exist."
        assert store.fetch_count == 2


async def test_deleted_prompt_is_not_served_stale(
    store: FakePromptStore, autojump_clock: trio.testing.MockClock
) -> None:
    async with cache_over(store) as cache:
        await cache.get(ESTHER)
        store.delete("esther")
        await trio.sleep(TTL)
        with pytest.raises(PromptNotFound):
            await cache.get(ESTHER)
        assert cache.statistics().stale_served == 0


async def test_size_is_bounded_least_recently_used_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakePromptStore()
    for name in ("a", "b", "c", "d"):
        store.put(name, f"prompt {name}")
    async with cache_over(store, max_entries=3) as cache:
        for name in ("a", "b", "c"):
            await cache.get(AssistantName(name))
        await cache.get(AssistantName("a"))  # touch: b is now least recently used
        await cache.get(AssistantName("d"))
        stats = cache.statistics()
        assert stats.entries == 3
        assert stats.evictions == 1
        fetches = store.fetch_count
        await cache.get(AssistantName("a"))
        await cache.get(AssistantName("c"))
        assert store.fetch_count == fetches  # still cached
        await cache.get(AssistantName("b"))
        assert store.fetch_count == fetches + 1  # was evicted


async def test_cancelled_waiter_does_not_cancel_the_shared_fetch(
    store: FakePromptStore, autojump_clock: trio.testing.MockClock
) -> None:
    store.latency = 1.0
    survivor: list[StoredPrompt] = []

    async def impatient() -> None:
        with trio.move_on_after(0.5) as scope:
            await cache.get(ESTHER)
        assert scope.cancelled_caught

    async def patient() -> None:
        survivor.append(await cache.get(ESTHER))

    async with cache_over(store) as cache:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(impatient)
            nursery.start_soon(patient)
        assert len(survivor) == 1
        # The fetch completed and filled the cache although its first requester left.
        assert await cache.get(ESTHER) == survivor[0]
        assert store.fetch_count == 1


async def test_cache_fills_even_if_every_waiter_left(
    store: FakePromptStore, autojump_clock: trio.testing.MockClock
) -> None:
    store.latency = 1.0
    async with cache_over(store) as cache:
        with trio.move_on_after(0.1):
            await cache.get(ESTHER)
        await trio.sleep(2.0)
        await cache.get(ESTHER)
        assert store.fetch_count == 1
        assert cache.statistics().hits == 1


async def test_one_assistants_failure_stays_with_its_waiters(
    store: FakePromptStore, autojump_clock: trio.testing.MockClock
) -> None:
    store.fail("support-agent", lambda name, key: RuntimeError("boom"))
    errors: list[BaseException] = []
    good: list[StoredPrompt] = []

    async def broken() -> None:
        try:
            await cache.get(AssistantName("support-agent"))
        except PromptError as exc:
            errors.append(exc)

    async def fine() -> None:
        good.append(await cache.get(ESTHER))

    async with cache_over(store) as cache:
        async with trio.open_nursery() as nursery:
            for _ in range(100):
                nursery.start_soon(broken)
                nursery.start_soon(fine)
        # The actor survived: it still answers.
        assert (await cache.get(ESTHER)).assistant == "esther"
        stats = cache.statistics()

    assert len(good) == 100
    assert len(errors) == 100
    assert all(isinstance(e, PromptStoreError) for e in errors)
    assert all(isinstance(e.__cause__, RuntimeError) for e in errors)
    # Each waiter owns its exception object: no shared, ever-growing traceback.
    assert len({id(e) for e in errors}) == 100
    assert stats.errors == 1
    assert store.fetch_count == 2


async def test_hung_store_times_out_its_waiters_only(
    store: FakePromptStore, autojump_clock: trio.testing.MockClock
) -> None:
    store.latency = 60.0
    async with cache_over(store, fetch_timeout=5.0) as cache:
        with pytest.raises(PromptTimeout):
            await cache.get(ESTHER)
        store.latency = 0.1
        assert (await cache.get(ESTHER)).assistant == "esther"


async def test_a_hostile_name_smuggled_past_the_type_is_still_refused_by_the_store(
    store: FakePromptStore, autojump_clock: trio.testing.MockClock
) -> None:
    # Names are validated once, at the call boundary; the store's key rule is the backstop.
    async with cache_over(store) as cache:
        with pytest.raises(InvalidAssistantName):
            await cache.get(AssistantName("../secrets"))
    assert store.fetch_count == 0


async def test_closed_cache_refuses_clearly(
    store: FakePromptStore, autojump_clock: trio.testing.MockClock
) -> None:
    async with cache_over(store) as cache:
        pass
    with pytest.raises(PromptStoreError, match="closed"):
        await cache.get(ESTHER)


async def test_waiters_are_told_when_the_cache_closes_under_them(
    store: FakePromptStore, autojump_clock: trio.testing.MockClock
) -> None:
    store.latency = 10.0
    caught: list[BaseException] = []

    async def waiter() -> None:
        try:
            await cache.get(ESTHER)
        except PromptStoreError as exc:
            caught.append(exc)

    async with trio.open_nursery() as outer, cache_over(store) as cache:
        outer.start_soon(waiter)
        await trio.sleep(1.0)
    assert len(caught) == 1
    assert "closed" in str(caught[0])


async def test_access_denied_is_negatively_cached_like_not_found(
    store: FakePromptStore, autojump_clock: trio.testing.MockClock
) -> None:
    # Without s3:ListBucket, S3 answers a missing key with 403: it must not hammer S3 either.
    store.fail(
        "ghost", lambda name, key: PromptAccessDenied("AccessDenied", assistant=name, key=key)
    )
    async with cache_over(store) as cache:
        for _ in range(20):
            with pytest.raises(PromptAccessDenied):
                await cache.get(AssistantName("ghost"))
        assert store.fetch_count == 1
        await trio.sleep(NEGATIVE)
        with pytest.raises(PromptAccessDenied):
            await cache.get(AssistantName("ghost"))
        assert store.fetch_count == 2


async def test_error_in_the_block_escapes_unwrapped(
    store: FakePromptStore, autojump_clock: trio.testing.MockClock
) -> None:
    with pytest.raises(KeyError) as info:
        async with cache_over(store) as cache:
            await cache.get(ESTHER)
            raise KeyError("caller's own bug")
    assert info.type is KeyError  # not an ExceptionGroup


async def test_check_answers_from_the_negative_cache_without_a_fetch(
    store: FakePromptStore, autojump_clock: trio.testing.MockClock
) -> None:
    """The admission check before an upgrade: a remembered refusal is MISSING at once."""
    async with cache_over(store) as cache:
        with pytest.raises(PromptNotFound):
            await cache.get(AssistantName("ghost"))
        start = trio.current_time()
        assert await cache.check(AssistantName("ghost"), 0.0) is PromptAvailability.MISSING
        assert await cache.check(AssistantName("ghost"), 0.3) is PromptAvailability.MISSING
        assert trio.current_time() == start  # answered from memory, no waiting
        assert store.fetch_count == 1
        await cache.get(ESTHER)
        assert await cache.check(ESTHER, 0.0) is PromptAvailability.PRESENT
        await trio.sleep(NEGATIVE)
        # The refusal expired: nothing known from memory any more.
        assert await cache.check(AssistantName("ghost"), 0.0) is PromptAvailability.UNKNOWN


async def test_check_waits_for_a_lookup_at_most_its_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fast = FakePromptStore(latency=0.1)
    fast.put("esther", "hello")
    async with cache_over(fast) as cache:
        assert await cache.check(AssistantName("ghost"), 0.3) is PromptAvailability.MISSING
        assert await cache.check(ESTHER, 0.3) is PromptAvailability.PRESENT
    slow = FakePromptStore(latency=1.0)
    slow.put("esther", "hello")
    async with cache_over(slow) as cache:
        start = trio.current_time()
        assert await cache.check(AssistantName("ghost"), 0.3) is PromptAvailability.UNKNOWN
        assert trio.current_time() - start == pytest.approx(0.3)
        # Giving up did not cancel the shared fetch: its answer lands in the cache.
        await trio.sleep(1.0)
        assert await cache.check(AssistantName("ghost"), 0.0) is PromptAvailability.MISSING
        assert slow.fetch_count == 1


async def test_check_treats_an_unwell_store_as_unknown(
    store: FakePromptStore, autojump_clock: trio.testing.MockClock
) -> None:
    store.fail("esther", throttled)
    async with cache_over(store) as cache:
        assert await cache.check(ESTHER, 0.3) is PromptAvailability.UNKNOWN


async def test_invalidate_makes_the_next_request_fetch_the_new_version(
    store: FakePromptStore, autojump_clock: trio.testing.MockClock
) -> None:
    async with cache_over(store) as cache:
        held = await cache.get(ESTHER)
        store.put("esther", "You are Esther, now even calmer.")
        # Fresh for another TTL: without invalidation the old version is served.
        assert (await cache.get(ESTHER)).version_id == held.version_id
        assert await cache.invalidate(ESTHER) is True
        fresh = await cache.get(ESTHER)
        stats = cache.statistics()
    assert fresh.version_id == "v2"
    assert held.version_id == "v1"  # what a running call holds is its own copy
    assert store.fetch_count == 2
    assert stats.invalidations == 1


async def test_invalidating_an_unknown_assistant_reports_nothing_dropped(
    store: FakePromptStore, autojump_clock: trio.testing.MockClock
) -> None:
    async with cache_over(store) as cache:
        assert await cache.invalidate(ESTHER) is False
        assert cache.statistics().invalidations == 0


async def test_invalidate_during_a_fetch_starts_a_new_one_for_later_requests(
    store: FakePromptStore, autojump_clock: trio.testing.MockClock
) -> None:
    early: list[StoredPrompt] = []
    late: list[StoredPrompt] = []
    async with cache_over(store) as cache:

        async def get_into(out: list[StoredPrompt]) -> None:
            out.append(await cache.get(ESTHER))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(get_into, early)
            await trio.testing.wait_all_tasks_blocked()  # the v1 fetch is in flight
            store.put("esther", "version two")
            assert await cache.invalidate(ESTHER) is True
            nursery.start_soon(get_into, late)
            await trio.testing.wait_all_tasks_blocked()
            assert cache.statistics().in_flight == 2
        # The superseded fetch answered its waiter but was not cached.
        assert (await cache.get(ESTHER)).version_id == "v2"
        stats = cache.statistics()
    assert store.fetch_count == 2
    assert [p.version_id for p in late] == ["v2"]
    assert len(early) == 1
    assert stats.in_flight == 0
    assert stats.hits == 1


async def test_superseded_fetch_failure_reaches_its_waiters_only(
    store: FakePromptStore, autojump_clock: trio.testing.MockClock
) -> None:
    errors: list[BaseException] = []
    async with cache_over(store) as cache:
        store.fail("esther", throttled)

        async def doomed() -> None:
            try:
                await cache.get(ESTHER)
            except PromptError as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(doomed)
            await trio.testing.wait_all_tasks_blocked()
            await cache.invalidate(ESTHER)
        store.heal("esther")
        # The failure was not remembered: the next request fetches and succeeds.
        assert (await cache.get(ESTHER)).version_id == "v1"
    assert len(errors) == 1 and isinstance(errors[0], PromptThrottled)
