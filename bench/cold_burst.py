"""Cold burst: 1,000 calls for one assistant arriving within one second → exactly one S3 GET,
and how long calls wait for their first audio.

Reproduce (about 1 minute on 2 cores):

    .venv/bin/python bench/cold_burst.py               # 1,000 calls
    .venv/bin/python bench/cold_burst.py --calls 200   # quick check

A fresh stack (local S3, emulator, daemon as separate processes; ``bench/harness.py``) with an
empty prompt cache; one ``novavoice loadtest`` process starts every call at once
(``--calls N --total N --ramp 0``), Twilio, assistant ``esther``, short calls. Figures:

- S3 GETs of ``assistants/esther.md``, counted on the S3 server's side from its request log
  (goal: exactly 1), and the daemon's ``novavoice_prompt_cache_fetches``;
- how the arrivals spread (first to last connect attempt, first to last admission);
- admission (connect → upgrade accepted) p50/p99 at the caller;
- prompt load p50/p99 inside the daemon (``novavoice_prompt_load_seconds``);
- admission → first ``audioInput`` written to Sonic p50/p99, stamped inside the daemon
  (``novavoice_call_setup_seconds``: upgrade, carrier start, prompt load, Sonic stream
  opened and set up);
- call start → first assistant audio sent, per call, from the daemon's ``call_ended`` lines
  (this one includes the caller's first utterance, the emulator's endpointing pause and its
  time to first audio). Results: ``bench/out/cold_burst.json``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from harness import (
    MACHINE_NOTE,
    OUT,
    call_ends,
    histogram_delta,
    histogram_quantile,
    load_results,
    metric,
    open_stack,
    run_loadtest,
    scrape,
    twilio_call_sid,
    write_json,
)

from devkit.simcall.report import percentile


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms"


def main() -> int:
    """Run the burst; print the GET count, arrival spread and latencies; 1 if GETs != 1."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--length", type=float, default=12.0, help="seconds per call")
    args = parser.parse_args()
    print(MACHINE_NOTE)
    # Enough Sonic connections for every stream at once (the emulator allows 1,000 streams
    # per connection; the daemon opens 100 per connection by default).
    streams = max(100, -(-args.calls // 8))
    env = {"SONIC_STREAMS_PER_CONNECTION": str(streams), "S3_MAX_CONNECTIONS": "10"}
    json_out = OUT / "cold_burst.loadtest.json"
    with open_stack("cold_burst", daemon_env=env) as stack:
        before = scrape(stack.admin_url)
        gets_before = stack.prompt_gets("esther")
        load = run_loadtest(
            stack.url,
            json_out,
            "--calls",
            str(args.calls),
            "--total",
            str(args.calls),
            "--ramp",
            "0",
            "--duration",
            "1",
            "--call-length",
            str(args.length),
            "--seed",
            "3",
        )
        load.wait(timeout=args.length + 300)
        after = scrape(stack.admin_url)
        gets = stack.prompt_gets("esther") - gets_before
        ends = call_ends(stack.daemon_log)
    results = load_results(json_out)
    calls = results["calls"]
    agg = results["aggregate"]
    starts = sorted(c["started_at"] for c in calls)
    admitted = sorted(c["started_at"] + c["admission_s"] for c in calls if c["admission_s"])
    admission = [c["admission_s"] for c in calls if c["admission_s"] is not None]
    daemon_first = [
        e["first_audio_s"]
        for c in calls
        if (e := ends.get(twilio_call_sid(c["seed"]))) is not None and "first_audio_s" in e
    ]
    load_buckets = histogram_delta(before, after, "novavoice_prompt_load_seconds")
    setup_buckets = histogram_delta(before, after, "novavoice_call_setup_seconds")
    fetches = metric(after, "novavoice_prompt_cache_fetches") - metric(
        before, "novavoice_prompt_cache_fetches"
    )
    out: dict[str, Any] = {
        "machine": MACHINE_NOTE,
        "calls": args.calls,
        "s3_gets": gets,
        "prompt_cache_fetches": fetches,
        "arrival_spread_s": starts[-1] - starts[0] if starts else None,
        "admitted_spread_s": admitted[-1] - admitted[0] if admitted else None,
        "admitted": len(admission),
        "outcomes": agg["outcomes"],
        "http_statuses": agg["http_statuses"],
        "admission_s": {"p50": percentile(admission, 50), "p99": percentile(admission, 99)},
        "prompt_load_s": {
            "p50": histogram_quantile(0.5, load_buckets),
            "p99": histogram_quantile(0.99, load_buckets),
            "count": load_buckets[-1][1] if load_buckets else 0,
        },
        "admission_to_first_audio_input_s": {
            "p50": histogram_quantile(0.5, setup_buckets),
            "p99": histogram_quantile(0.99, setup_buckets),
            "count": setup_buckets[-1][1] if setup_buckets else 0,
        },
        "daemon_start_to_first_audio_s": {
            "count": len(daemon_first),
            "p50": percentile(daemon_first, 50),
            "p99": percentile(daemon_first, 99),
        },
        "caller_first_audio_s": agg["first_audio_s"],
        "frames_late": agg["frames_late"],
    }
    print(
        f"cold burst: {args.calls} calls for esther, started within "
        f"{out['arrival_spread_s']:.3f} s, admitted within {out['admitted_spread_s']:.3f} s "
        f"({out['admitted']} admitted; outcomes {agg['outcomes']})"
    )
    print(
        f"  S3 GETs of assistants/esther.md (server side): {gets}   "
        f"daemon prompt cache fetches: {fetches:.0f}"
    )
    a, pl, df = out["admission_s"], out["prompt_load_s"], out["daemon_start_to_first_audio_s"]
    print(f"  admission (connect → upgrade, caller side)  p50 {_ms(a['p50'])}  p99 {_ms(a['p99'])}")
    print(
        f"  prompt load inside the daemon (n={pl['count']:.0f})  p50 {_ms(pl['p50'])}  "
        f"p99 {_ms(pl['p99'])}"
    )
    print(
        f"  call start → first assistant audio sent (daemon, n={df['count']})  "
        f"p50 {_ms(df['p50'])}  p99 {_ms(df['p99'])}"
    )
    su = out["admission_to_first_audio_input_s"]
    print(
        f"  admission → first audioInput written (daemon, n={su['count']:.0f})  "
        f"p50 {_ms(su['p50'])}  p99 {_ms(su['p99'])}"
    )
    ok = gets == 1
    print("goals:")
    print(f"  [{'met' if ok else 'MISSED'}] exactly 1 S3 GET for the burst (got {gets})")
    path = write_json("cold_burst", out)
    print(f"results: {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
