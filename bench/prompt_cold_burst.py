"""1,000 simultaneous prompt requests for a cold assistant, against moto's S3 server.

Real boto3 over HTTP to ``ThreadedMotoServer`` on 127.0.0.1 (ephemeral port), through the
S3 prompt store, the shared cache actor and the per-call fetcher, exactly as calls would.
Prints:

* S3 GETs for the assistant's key, counted on the server side (must be 1: single-flight);
* latency of the cold burst (each request, from start to answer);
* latency of the warm path: sequential requests, and a concurrent burst of 1,000.

Exits 1 if the GET count is not 1. Run: ``.venv/bin/python bench/prompt_cold_burst.py``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import trio

from actors.assistant_names import validate_assistant_name
from actors.prompt_budget import PromptLoadBudget
from actors.prompt_cache import open_prompt_cache
from actors.prompt_fetch import PromptFetcher
from actors.s3_prompt_store import S3PromptStore, make_s3_client
from devkit.local_s3 import LocalS3, run_local_s3
from sessions.config import PromptSettings

BUCKET = "nova-sonic-prompts"
PREFIX = "assistants/"
ESTHER = validate_assistant_name("esther")
PROMPT = (
    "You are Esther, the receptionist of a medical practice. Keep answers short.\n" * 40
).encode()


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    q = statistics.quantiles(ordered, n=100, method="inclusive")
    return (
        f"p50 {q[49] * 1e6:9.1f} µs   p99 {q[98] * 1e6:9.1f} µs   "
        f"max {ordered[-1] * 1e6:9.1f} µs   (n={len(ordered)})"
    )


async def _timed_burst(fetcher: PromptFetcher, n: int) -> list[float]:
    latencies: list[float] = []

    async def one() -> None:
        start = time.perf_counter()
        await fetcher.fetch(ESTHER)
        latencies.append(time.perf_counter() - start)

    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(one)
    return latencies


async def run(s3: LocalS3, burst: int, warm: int, connections: int) -> int:
    """Seed the bucket, run the bursts, print the figures; returns the exit status."""
    client = make_s3_client(
        region="us-east-1",
        max_connections=connections,
        endpoint_url=s3.endpoint_url,
        static_credentials=("bench", "bench"),
        budget=PromptLoadBudget(30.0),
    )
    limiter = trio.CapacityLimiter(connections)

    def seed() -> None:
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        client.put_object(Bucket=BUCKET, Key=f"{PREFIX}esther.md", Body=PROMPT)

    await trio.to_thread.run_sync(seed, limiter=limiter)
    s3.requests.reset()
    store = S3PromptStore(client=client, bucket=BUCKET, prefix=PREFIX, limiter=limiter)
    # The daemon's defaults, with a generous budget: the bench measures, it does not time out.
    p = PromptSettings()
    budget = PromptLoadBudget(30.0)
    async with open_prompt_cache(
        store,
        ttl=p.cache_ttl,
        stale_if_error=p.stale_if_error,
        negative_ttl=p.negative_ttl,
        max_entries=p.cache_max_entries,
        fetch_timeout=budget.cache_fetch_timeout,
        refresh_retry_interval=p.refresh_retry_interval,
    ) as cache:
        fetcher = PromptFetcher(cache, timeout=budget.call_timeout)
        cold = await _timed_burst(fetcher, burst)
        gets = s3.requests.count("GET", path_suffix=f"/{PREFIX}esther.md")

        sequential: list[float] = []
        for _ in range(warm):
            start = time.perf_counter()
            await fetcher.fetch(ESTHER)
            sequential.append(time.perf_counter() - start)
        concurrent = await _timed_burst(fetcher, burst)
        stats = cache.statistics()

    print(f"prompt cold burst: {burst} concurrent requests, moto server at {s3.endpoint_url}")
    print(f"  S3 GETs for assistants/esther.md (server side): {gets}   (must be 1)")
    print(f"  cold burst, per request          {_percentiles(cold)}")
    print(f"  warm path, sequential            {_percentiles(sequential)}")
    print(f"  warm path, {burst} concurrent     {_percentiles(concurrent)}")
    print(
        f"  cache: hits={stats.hits} misses={stats.misses} fetches={stats.fetches} "
        f"errors={stats.errors}"
    )
    return 0 if gets == 1 else 1


def main() -> int:
    """Parse options, start the local S3 server, run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--warm", type=int, default=10_000, help="sequential warm requests")
    parser.add_argument("--connections", type=int, default=10, help="S3 pool and thread limit")
    args = parser.parse_args()
    with run_local_s3() as s3:
        return trio.run(run, s3, args.burst, args.warm, args.connections)


if __name__ == "__main__":
    sys.exit(main())
