"""Saturation capacity of ``novavoice serve`` with 1 worker and with 2 (issue 12).

Reproduce (about 15 minutes on 2 cores):

    .venv/bin/python bench/workers_capacity.py
    .venv/bin/python bench/workers_capacity.py --levels 50,100 --workers 2   # quick check

For each worker count, local S3, the emulator and the daemon (``NOVAVOICE_WORKERS=N``) run
as separate processes (``bench/harness.py``), and two load generators (``novavoice
loadtest``, each its own process) drive them:

1. unloaded: a probe run of ``--probe-calls`` calls, two at a time, gives the reference p95
   of first audio (from the end of the caller's first utterance to the first assistant audio
   the caller hears, as ``novavoice loadtest`` measures it);
2. for each level N (stepping up): a background load ramps N calls that outlast the
   measurement; once the daemon's ``/metrics`` shows N active calls, the same probe run is
   made again and its p95 first audio measured under that load.

Saturation is the highest level whose probe p95 stays within ``--margin-ms`` (100 ms) of the
unloaded value with every probe call succeeding and hearing an answer; the stepping stops at
the first level past it. Everything shares the machine's cores (the load generators are
Python too and cost about as much CPU per call as the daemon), and on a machine shared with
other work the figures are noisy: compare the two worker counts of one run, not runs of
different days.
Results: ``bench/out/workers_capacity.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from harness import (
    MACHINE_NOTE,
    OUT,
    load_results,
    metric,
    open_stack,
    run_loadtest,
    scrape,
    write_json,
)

from devkit.simcall import percentile


def active_calls(admin_url: str) -> int:
    """Calls in progress, summed over the workers by the parent's ``/metrics``."""
    return int(metric(scrape(admin_url), "novavoice_calls_active"))


def wait_idle(admin_url: str, timeout: float = 90.0) -> None:
    """Wait until no call is in progress."""
    deadline = time.monotonic() + timeout
    while active_calls(admin_url) and time.monotonic() < deadline:
        time.sleep(0.5)


def probe(url: str, tag: str, calls: int) -> dict[str, Any]:
    """Run ``calls`` short calls two at a time; their p95 first audio and failures."""
    out = OUT / f"workers_capacity.{tag}.probe.json"
    load = run_loadtest(
        url,
        out,
        "--calls",
        "2",
        "--total",
        str(calls),
        "--duration",
        "600",
        # Long enough for the first reply under load (a late reply is measured, not cut off).
        "--call-length",
        "10",
        "--ramp",
        "4",
        "--seed",
        "11",
    )
    load.wait(timeout=300)
    rows = load_results(out)["calls"]
    firsts = [r["first_audio_s"] for r in rows if r.get("first_audio_s") is not None]
    return {
        "calls": len(rows),
        "failed": sum(not r["ok"] for r in rows),
        # A call that heard no answer at all within its length is past any latency margin.
        "no_answer": len(rows) - len(firsts),
        "first_audio_p50_ms": _ms(percentile(firsts, 50)),
        "first_audio_p95_ms": _ms(percentile(firsts, 95)),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def measure_level(
    url: str, admin_url: str, n: int, *, ramp: float, probe_calls: int, tag: str
) -> dict[str, Any]:
    """Hold ``n`` background calls and probe first audio under them."""
    ramp_s = n / ramp
    hold = ramp_s + 120  # outlasts the probe even on a slow machine; stopped early below
    background = run_loadtest(
        url,
        OUT / f"workers_capacity.{tag}.load.json",
        "--calls",
        str(n),
        "--ramp",
        str(ramp),
        "--duration",
        f"{ramp_s + 1:.1f}",
        "--call-length",
        f"{hold:.1f}",
        "--seed",
        "5",
    )
    try:
        deadline = time.monotonic() + ramp_s * 3 + 30
        while (up := active_calls(admin_url)) < n:
            if time.monotonic() > deadline or background.poll() is not None:
                return {"calls": n, "error": f"only {up}/{n} background calls came up"}
            time.sleep(0.5)
        result = probe(url, tag, probe_calls)
        result["background_active_after"] = active_calls(admin_url)
        return {"calls": n, **result}
    finally:
        background.terminate()
        background.wait(timeout=60)
        wait_idle(admin_url)


def run_workers(workers: int, levels: list[int], args: argparse.Namespace) -> dict[str, Any]:
    """The unloaded reference and the stepped levels for one worker count."""
    env = {"NOVAVOICE_WORKERS": str(workers), "MAX_CALLS": "5000"}
    with open_stack(f"workers_capacity.w{workers}", daemon_env=env) as stack:
        # Warm-up: imports, each worker's first TLS connection to Sonic, the prompt caches.
        probe(stack.url, f"w{workers}.warmup", 6)
        unloaded = probe(stack.url, f"w{workers}.unloaded", args.probe_calls)
        reference = unloaded["first_audio_p95_ms"]
        print(f"{workers} worker(s): unloaded first audio p95 {reference} ms", flush=True)
        out: dict[str, Any] = {"workers": workers, "unloaded": unloaded, "levels": []}
        saturation = 0
        for n in levels:
            level = measure_level(
                stack.url,
                stack.admin_url,
                n,
                ramp=args.ramp,
                probe_calls=args.probe_calls,
                tag=f"w{workers}.n{n}",
            )
            p95 = level.get("first_audio_p95_ms")
            ok = (
                "error" not in level
                and not level["failed"]
                and not level["no_answer"]
                and p95 is not None
                and reference is not None
                and p95 <= reference + args.margin_ms
            )
            level["within_margin"] = ok
            out["levels"].append(level)
            print(f"  {n:5d} calls: {_describe(level)}", flush=True)
            if not ok:
                break
            saturation = n
        out["saturation_calls"] = saturation
        return out


def _describe(level: dict[str, Any]) -> str:
    if "error" in level:
        return f"ERROR {level['error']}"
    verdict = "ok" if level["within_margin"] else "past saturation"
    return (
        f"probe first audio p50 {level['first_audio_p50_ms']} ms, "
        f"p95 {level['first_audio_p95_ms']} ms, failed {level['failed']}/{level['calls']}, "
        f"no answer {level['no_answer']}: "
        f"{verdict}"
    )


def main() -> int:
    """Measure each worker count; print the saturation capacities side by side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    parser.add_argument(
        "--levels",
        default="2,4,8,12,16,24,32,48,64,96,128,192,256",
        help="background calls per level, stepped up until saturation",
    )
    parser.add_argument("--ramp", type=float, default=40.0, help="background call starts/s")
    parser.add_argument("--probe-calls", type=int, default=8, help="probe calls per level")
    parser.add_argument("--margin-ms", type=float, default=100.0, help="allowed p95 rise")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    print(MACHINE_NOTE)
    results: dict[str, Any] = {"machine": MACHINE_NOTE, "args": vars(args), "runs": []}
    for workers in (int(x) for x in args.workers.split(",")):
        results["runs"].append(run_workers(workers, levels, args))
    print("saturation (most calls with probe p95 first audio within the margin):")
    for run in results["runs"]:
        top = run["levels"][-1]["calls"] if run["levels"] else None
        capped = " (highest level tried)" if run["saturation_calls"] == top else ""
        print(f"  {run['workers']} worker(s): {run['saturation_calls']} calls{capped}")
    path: Path = write_json("workers_capacity", results)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
