"""The per-call prompt fetcher: one deadline, failures of that call only."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from actors.assistant_names import AssistantName
from actors.errors import PromptNotFound, PromptTimeout
from actors.prompt_fetch import PromptFetcher, prompt_log_fields
from devkit.fake_prompt_store import FakePromptStore

from .conftest import cache_over

ESTHER = AssistantName("esther")


async def test_returns_the_prompt_with_its_version(
    store: FakePromptStore, autojump_clock: trio.testing.MockClock
) -> None:
    async with cache_over(store) as cache:
        prompt = await PromptFetcher(cache, timeout=5.0).fetch(AssistantName("support-agent"))
    assert prompt.text == "You are a patient support agent."
    fields = prompt_log_fields(prompt)
    assert fields["prompt_version_id"] == "v1"
    assert fields["prompt_etag"] == prompt.etag and prompt.etag.startswith('"')
    assert fields["prompt_key"] == "assistants/support-agent.md"
    # The text is in neither the log fields nor the record's repr.
    assert prompt.text not in repr(fields)
    assert prompt.text not in repr(prompt)


async def test_timeout_fails_this_call_only(
    store: FakePromptStore, autojump_clock: trio.testing.MockClock
) -> None:
    store.latency = 3.0
    async with cache_over(store, fetch_timeout=10.0) as cache:
        hasty = PromptFetcher(cache, timeout=1.0)
        calm = PromptFetcher(cache, timeout=5.0)
        outcomes: dict[str, object] = {}

        async def run(label: str, fetcher: PromptFetcher) -> None:
            try:
                outcomes[label] = (await fetcher.fetch(ESTHER)).version_id
            except PromptTimeout as exc:
                outcomes[label] = exc

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "hasty", hasty)
            nursery.start_soon(run, "calm", calm)
    assert isinstance(outcomes["hasty"], PromptTimeout)
    assert outcomes["hasty"].assistant == "esther"
    assert outcomes["calm"] == "v1"
    assert store.fetch_count == 1


async def test_missing_prompt_is_a_clear_error(
    store: FakePromptStore, autojump_clock: trio.testing.MockClock
) -> None:
    async with cache_over(store) as cache:
        with pytest.raises(PromptNotFound, match="nobody"):
            await PromptFetcher(cache, timeout=5.0).fetch(AssistantName("nobody"))
