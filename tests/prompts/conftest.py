"""Fixtures for the prompt path: a fake store for actor tests, moto for S3 tests.

Actor tests use the fake store with the autojump clock. S3 tests use moto with the real
clock and never the autojump clock: boto3 runs in worker threads, which autojump cannot see
(python-trio/trio#456), so virtual time could leap while a request is in flight.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from actors.prompt_cache import PromptCache, open_prompt_cache
from actors.prompt_store import PromptStore
from devkit.fake_prompt_store import FakePromptStore

TTL = 300.0
STALE = 60.0
NEGATIVE = 10.0


@pytest.fixture
def store() -> FakePromptStore:
    """A fake store holding ``esther`` and ``support-agent``, answering after 0.1 s."""
    fake = FakePromptStore(latency=0.1)
    fake.put("esther", "You are Esther, a calm receptionist.")
    fake.put("support-agent", "You are a patient support agent.")
    return fake


@asynccontextmanager
async def cache_over(store: PromptStore, **overrides: Any) -> AsyncIterator[PromptCache]:
    """Open a cache over ``store`` with the test defaults, overridable per test."""
    options: dict[str, Any] = {
        "ttl": TTL,
        "stale_if_error": STALE,
        "negative_ttl": NEGATIVE,
        "max_entries": 100,
        "fetch_timeout": 5.0,
        "refresh_retry_interval": 1.0,
    }
    options.update(overrides)
    async with open_prompt_cache(store, **options) as cache:
        yield cache
