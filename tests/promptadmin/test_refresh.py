"""After a write the admin refreshes every daemon: the daemon's cache drops the assistant
and its next request fetches the new version; the admin reports who confirmed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio

from actors.assistant_names import AssistantName
from actors.prompt_cache import PromptCache, open_prompt_cache
from actors.s3_prompt_store import S3PromptStore
from promptadmin.versions import PromptVersions
from sessions.admin import Health, serve_admin
from sessions.metrics import Metrics

from .conftest import BUCKET, ESTHER_V1, PREFIX, auth, open_test_admin

TOKEN = "daemon-refresh-token-42"
ESTHER = AssistantName("esther")
ESTHER_V2 = ESTHER_V1 + "Speak slowly.\n"


@asynccontextmanager
async def daemon_side(
    store: PromptVersions, limiter: trio.CapacityLimiter
) -> AsyncIterator[tuple[PromptCache, str]]:
    """The daemon's prompt cache (5-minute TTL) and admin port, on 127.0.0.1:0."""
    s3 = S3PromptStore(client=store.client, bucket=BUCKET, prefix=PREFIX, limiter=limiter)
    async with (
        open_prompt_cache(
            s3,
            ttl=300,
            stale_if_error=60,
            negative_ttl=10,
            max_entries=10,
            fetch_timeout=5,
            refresh_retry_interval=1,
        ) as cache,
        trio.open_nursery() as nursery,
    ):
        serve = partial(
            serve_admin,
            "127.0.0.1",
            0,
            metrics=Metrics(process_metrics=False),
            health=Health(),
            prompts=cache,
            refresh_token=TOKEN,
        )
        host, port = await nursery.start(serve)
        yield cache, f"http://{host}:{port}"
        nursery.cancel_scope.cancel()


async def publish(client: httpx.AsyncClient, text: str) -> dict[str, Any]:
    etag = (await client.get("/api/v1/prompts/esther", headers=auth())).headers["etag"]
    reply = await client.put(
        "/api/v1/prompts/esther",
        json={"text": text, "message": "slower"},
        headers={**auth(), "if-match": etag},
    )
    assert reply.status_code == 200, reply.text
    result: dict[str, Any] = reply.json()
    return result


async def test_publish_refreshes_the_daemon_and_its_cache_refetches(
    store: PromptVersions, tmp_path: Path
) -> None:
    limiter = trio.CapacityLimiter(1)
    with trio.fail_after(30):
        async with daemon_side(store, limiter) as (cache, url):
            before = await cache.get(ESTHER)
            unreachable = "http://127.0.0.1:9"  # discard port: nothing listens
            async with open_test_admin(
                store, tmp_path, daemons=(url, unreachable), token=TOKEN, limiter=limiter
            ) as admin:
                result = await publish(admin.client, ESTHER_V2)
                after = await cache.get(ESTHER)
                failures = admin.ctx.metrics.refresh_failures._value.get()
    assert result["daemons"][0] == {"daemon": url, "confirmed": True, "detail": "dropped"}
    assert result["daemons"][1]["daemon"] == unreachable
    assert result["daemons"][1]["confirmed"] is False
    assert result["confirmed"] == 1 and failures == 1
    assert before.version_id != after.version_id == result["version"]
    assert after.text == ESTHER_V2
    assert cache.statistics().fetches == 2  # well inside the TTL, the cache fetched again


async def test_a_wrong_daemon_token_is_reported_and_the_cache_keeps_its_copy(
    store: PromptVersions, tmp_path: Path
) -> None:
    limiter = trio.CapacityLimiter(1)
    with trio.fail_after(30):
        async with daemon_side(store, limiter) as (cache, url):
            before = await cache.get(ESTHER)
            async with open_test_admin(
                store, tmp_path, daemons=(url,), token="not-the-daemon-token", limiter=limiter
            ) as admin:
                result = await publish(admin.client, ESTHER_V2)
            after = await cache.get(ESTHER)
    assert result["daemons"] == [{"daemon": url, "confirmed": False, "detail": "HTTP 401"}]
    assert after.version_id == before.version_id
    assert cache.statistics().fetches == 1
