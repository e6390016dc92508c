"""Soak: 10,000 short calls one after another (per slot) → the daemon's RSS growth (no leak).

Reproduce (about 9 minutes on 2 cores; each of the 30 slots places its calls back to back):

    .venv/bin/python bench/soak.py                      # 10,000 calls
    .venv/bin/python bench/soak.py --total 1000         # quick check

One stack (local S3, emulator, daemon as separate processes; ``bench/harness.py``). A warm-up
of ``--warmup`` calls first (imports, Sonic connections, prompt cache, allocator arenas), then
RSS is read from ``/proc/<pid>/status``; then ``novavoice loadtest --calls SLOTS --total N``
places N calls of ``--length`` seconds, and the RSS is sampled every 5 s and read again once
the daemon is idle. Figures: RSS growth from after the warm-up to the end (goal < 5 MB), the
growth over the second half of the run (a leak keeps growing; a warm-up plateau does not),
and the daemon's CPU per call. Results: ``bench/out/soak.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from harness import (
    MACHINE_NOTE,
    OUT,
    cpu_seconds,
    load_results,
    metric,
    open_stack,
    rss_bytes,
    run_loadtest,
    scrape,
    write_json,
)

GOAL_MB = 5.0


def _idle(admin_url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while metric(scrape(admin_url), "novavoice_calls_active") and time.monotonic() < deadline:
        time.sleep(0.5)


def main() -> int:
    """Run warm-up and soak; print RSS growth and the goal."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total", type=int, default=10_000)
    parser.add_argument("--slots", type=int, default=30, help="calls in progress at once")
    parser.add_argument("--length", type=float, default=1.0, help="seconds per call")
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()
    print(MACHINE_NOTE)
    # Generous: the duration only bounds when new calls may start.
    duration = str(args.total / args.slots * (args.length + 2) + 60)
    with open_stack("soak") as stack:
        pid = stack.daemon_pid
        warm = run_loadtest(
            stack.url,
            OUT / "soak.warmup.json",
            "--calls",
            str(args.slots),
            "--total",
            str(args.warmup),
            "--duration",
            duration,
            "--call-length",
            str(args.length),
            "--ramp",
            "0",
            "--seed",
            "1",
        )
        warm.wait()
        _idle(stack.admin_url)
        time.sleep(2)
        rss0, cpu0, t0 = rss_bytes(pid), cpu_seconds(pid), time.monotonic()
        s0 = scrape(stack.admin_url)
        print(f"after {args.warmup} warm-up calls: RSS {rss0 / 2**20:.2f} MiB")
        json_out = OUT / "soak.loadtest.json"
        load = run_loadtest(
            stack.url,
            json_out,
            "--calls",
            str(args.slots),
            "--total",
            str(args.total),
            "--duration",
            duration,
            "--call-length",
            str(args.length),
            "--ramp",
            "0",
            "--seed",
            "2",
        )
        samples: list[tuple[float, int, float]] = []
        while load.poll() is None:
            time.sleep(5)
            ended = metric(scrape(stack.admin_url), "novavoice_calls_ended_total")
            samples.append((time.monotonic() - t0, rss_bytes(pid), ended))
            if len(samples) % 12 == 0:
                print(
                    f"  t={samples[-1][0]:4.0f}s calls ended "
                    f"{ended - metric(s0, 'novavoice_calls_ended_total'):.0f} "
                    f"RSS {samples[-1][1] / 2**20:.2f} MiB",
                    flush=True,
                )
        _idle(stack.admin_url)
        time.sleep(2)
        rss1, cpu1 = rss_bytes(pid), cpu_seconds(pid)
        s1 = scrape(stack.admin_url)
    agg = load_results(json_out)["aggregate"]
    ended = metric(s1, "novavoice_calls_ended_total") - metric(s0, "novavoice_calls_ended_total")
    half = [s for s in samples if s[2] - metric(s0, "novavoice_calls_ended_total") >= ended / 2]
    second_half = (rss1 - half[0][1]) if half else None
    growth_mb = (rss1 - rss0) / 1e6
    out: dict[str, Any] = {
        "machine": MACHINE_NOTE,
        "args": vars(args),
        "calls": agg["calls"],
        "ok": agg["ok"],
        "outcomes": agg["outcomes"],
        "daemon_calls_ended": ended,
        "rss_after_warmup": rss0,
        "rss_end": rss1,
        "rss_growth_mb": growth_mb,
        "rss_growth_second_half_mb": None if second_half is None else second_half / 1e6,
        "rss_peak": max((s[1] for s in samples), default=rss1),
        "cpu_ms_per_call": (cpu1 - cpu0) * 1000 / max(1.0, ended),
        "samples": samples,
    }
    print(
        f"soak: {agg['calls']} calls of {args.length} s ({agg['ok']} ok; outcomes "
        f"{agg['outcomes']}), {args.slots} at a time; daemon counted {ended:.0f} ended"
    )
    print(
        f"  RSS after warm-up {rss0 / 2**20:.2f} MiB, peak {out['rss_peak'] / 2**20:.2f} MiB, "
        f"end {rss1 / 2**20:.2f} MiB: growth {growth_mb:.2f} MB "
        f"(second half of the run: {out['rss_growth_second_half_mb'] or 0:.2f} MB)"
    )
    print(f"  daemon CPU {out['cpu_ms_per_call']:.1f} ms per call")
    ok = growth_mb < GOAL_MB
    print("goals:")
    print(
        f"  [{'met' if ok else 'MISSED'}] RSS growth {growth_mb:.2f} MB < {GOAL_MB} MB "
        f"over {ended:.0f} calls"
    )
    path = write_json("soak", out)
    print(f"results: {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
