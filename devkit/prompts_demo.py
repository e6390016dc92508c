"""Show the prompt path working end to end against a local S3 (moto's server), no AWS needed.

``novavoice prompts-demo`` shows the prompt path alone (``novavoice demo`` runs whole
calls). It starts an S3-compatible server on 127.0.0.1, creates a versioned prompts
bucket seeded with example prompts for ``esther`` and ``support-agent``, points a real
boto3 client at it, opens the shared prompt cache, then:

1. fires a cold burst of concurrent requests for ``esther`` plus requests for
   ``support-agent``, a missing assistant and hostile names, then a warm round;
2. waits for the cache TTL and asks again (an unchanged prompt costs a 304);
3. uploads a new version of Esther's prompt, waits again, and picks it up.

It prints what each request got (prompt version, ETag, error), how many GETs the S3 server
saw, and the cache's statistics.
"""

from __future__ import annotations

import argparse
import collections
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs
import trio

from actors.assistant_names import validate_assistant_name
from actors.errors import PromptError
from actors.prompt_cache import PromptCacheStatistics, open_prompt_cache
from actors.prompt_fetch import PromptFetcher
from actors.s3_prompt_store import S3PromptStore, make_s3_client
from devkit.example_prompts import EXAMPLE_PROMPTS, seed_example_prompts
from devkit.local_s3 import LocalS3, run_local_s3
from sessions.config import Settings, load_settings

if TYPE_CHECKING:
    pass

UPDATED_ESTHER = EXAMPLE_PROMPTS["esther"] + "The practice is closed on Wednesday afternoons.\n"

HOSTILE_NAMES = ["../secrets", "esther.md", "Esther", "\u0435sther", "support--agent", "a" * 65]
MISSING = "nobody"

Print = Callable[[str], None]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``novavoice demo``."""
    parser.add_argument(
        "--burst", type=int, default=200, help="concurrent cold requests for esther"
    )
    parser.add_argument(
        "--ttl-ms",
        type=int,
        default=1000,
        help="cache TTL for the demo, so revalidation shows within seconds (default 1000)",
    )


def main(args: argparse.Namespace) -> int:
    """Run the demo; returns 0 when every step behaved as expected."""
    settings = load_settings()
    with run_local_s3() as s3:
        return trio.run(run_demo, s3, settings, args.burst, args.ttl_ms / 1000.0, print)


async def _ask(fetcher: PromptFetcher, name: str, tally: collections.Counter[str]) -> None:
    try:
        # As a call does at its boundary: the naming rule first, then the prompt path.
        prompt = await fetcher.fetch(validate_assistant_name(name))
    except PromptError as exc:
        tally[f"{type(exc).__name__}: {exc}"] += 1
    else:
        tally[f"version {prompt.version_id} etag {prompt.etag}"] += 1


def _show(out: Print, title: str, results: dict[str, collections.Counter[str]]) -> None:
    out(f"\n== {title}")
    for name, tally in results.items():
        for outcome, n in tally.items():
            out(f"  {ascii(name)[:24]:<26} x{n:<4} {outcome[:110]}")


def _show_stats(out: Print, stats: PromptCacheStatistics, s3: LocalS3, prefix: str) -> None:
    out("\n== S3 GETs seen by the server (per key and status)")
    for name in [*EXAMPLE_PROMPTS, MISSING]:
        suffix = f"/{prefix}{name}.md"
        by_status = {
            status: s3.requests.count("GET", path_suffix=suffix, status=status)
            for status in (200, 304, 404)
        }
        shown = ", ".join(f"{n} x {status}" for status, n in by_status.items() if n)
        out(f"  {name:<14} {shown or 'none'}")
    out("\n== prompt cache statistics")
    out("  " + ", ".join(f"{k}={v}" for k, v in attrs.asdict(stats).items()))


async def run_demo(s3: LocalS3, settings: Settings, burst: int, ttl: float, out: Print) -> int:
    """The demo proper, against the running local S3; returns the exit status."""
    client = make_s3_client(
        region=settings.aws_region,
        max_connections=settings.prompts.s3_max_connections,
        endpoint_url=s3.endpoint_url,
        static_credentials=("demo", "demo"),
        budget=settings.prompts.budget,
    )
    limiter = trio.CapacityLimiter(settings.prompts.s3_max_connections)
    await trio.to_thread.run_sync(seed_example_prompts, client, settings, limiter=limiter)
    s3.requests.reset()
    store = S3PromptStore(
        client=client,
        bucket=settings.prompts.bucket,
        prefix=settings.prompts.prefix,
        limiter=limiter,
        max_bytes=settings.prompts.max_bytes,
    )
    out(f"local S3 at {s3.endpoint_url}, bucket {settings.prompts.bucket} (versioned)")
    out(f"cache TTL {ttl:g} s for the demo; prompts under {settings.prompts.prefix}")

    async with open_prompt_cache(
        store,
        ttl=ttl,
        stale_if_error=settings.prompts.stale_if_error,
        negative_ttl=max(settings.prompts.negative_ttl, 2 * ttl + 1),
        max_entries=settings.prompts.cache_max_entries,
        fetch_timeout=settings.prompts.budget.cache_fetch_timeout,
        refresh_retry_interval=settings.prompts.refresh_retry_interval,
    ) as cache:
        fetcher = PromptFetcher(cache, timeout=settings.prompts.budget.call_timeout)
        burst_results = await _burst(fetcher, burst)
        title = f"cold burst: {burst} x esther, 20 x support-agent, 20 x {MISSING}, hostile names"
        _show(out, title, burst_results)
        esther_gets_after_burst = s3.requests.count("GET", path_suffix="/esther.md")
        warm = await _round(fetcher, ["esther"] * 100 + [MISSING] * 5)
        _show(out, "warm: 100 x esther, 5 x nobody (served from memory)", warm)

        await trio.sleep(ttl)
        again = await _round(fetcher, ["esther"] * 5)
        _show(out, "after the TTL, prompt unchanged (revalidated with If-None-Match)", again)

        await trio.to_thread.run_sync(
            lambda: client.put_object(
                Bucket=settings.prompts.bucket,
                Key=f"{settings.prompts.prefix}esther.md",
                Body=UPDATED_ESTHER.encode(),
            ),
            limiter=limiter,
        )
        await trio.sleep(ttl)
        updated = await _round(fetcher, ["esther"] * 5)
        _show(out, "after the TTL, prompt updated in S3 (new version picked up)", updated)
        stats = cache.statistics()

    _show_stats(out, stats, s3, settings.prompts.prefix)
    return _verdict(out, s3, esther_gets_after_burst, stats, burst_results, updated)


async def _burst(fetcher: PromptFetcher, burst: int) -> dict[str, collections.Counter[str]]:
    names = ["esther"] * burst + ["support-agent"] * 20 + [MISSING] * 20 + HOSTILE_NAMES
    return await _round(fetcher, names)


async def _round(fetcher: PromptFetcher, names: list[str]) -> dict[str, collections.Counter[str]]:
    results: dict[str, collections.Counter[str]] = {n: collections.Counter() for n in names}
    async with trio.open_nursery() as nursery:
        for name in names:
            nursery.start_soon(_ask, fetcher, name, results[name])
    return results


def _verdict(
    out: Print,
    s3: LocalS3,
    esther_gets_after_burst: int,
    stats: PromptCacheStatistics,
    burst: dict[str, collections.Counter[str]],
    updated: dict[str, collections.Counter[str]],
) -> int:
    checks = {
        "cold burst for esther cost exactly one S3 GET": esther_gets_after_burst == 1,
        "missing assistant cost one GET (negative cache)": s3.requests.count(
            "GET", path_suffix=f"/{MISSING}.md"
        )
        == 1,
        "hostile names refused before S3": all(
            all(k.startswith("InvalidAssistantName") for k in burst[n]) for n in HOSTILE_NAMES
        ),
        "unchanged prompt revalidated with a 304": s3.requests.count(
            "GET", path_suffix="/esther.md", status=304
        )
        == 1,
        "updated prompt picked up as a new version": len(updated["esther"]) == 1
        and not any(k in burst["esther"] for k in updated["esther"]),
        "only the missing assistant's fetch failed": stats.errors == 1,
        "warm requests were cache hits": stats.hits >= 100 and stats.negative_hits >= 5,
    }
    out("\n== checks")
    for label, ok in checks.items():
        out(f"  [{'ok' if ok else 'FAILED'}] {label}")
    return 0 if all(checks.values()) else 1
