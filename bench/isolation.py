"""Isolation: at N calls with 5 % of them faulted, healthy calls lose no frame and their latency
stays within 10 % of a fault-free run.

Reproduce (about 3 minutes at 300 calls on 2 cores):

    .venv/bin/python bench/isolation.py                 # 300 calls
    .venv/bin/python bench/isolation.py --calls 60      # quick check

One stack (local S3, emulator, daemon as separate processes; ``bench/harness.py``), two runs
of the same healthy load (``novavoice loadtest``, Twilio, seeded: the same scripts both times):

1. fault-free: N healthy calls;
2. faulted: N − F healthy calls plus F faulted slots (F = 5 % of N) that keep redialling for
   the whole run, in three equal groups, each its own load-generator process:
   - Sonic resets the stream (RST_STREAM) 3 s in: the emulator's per-call fault, asked for by
     the ``[emulator:rst-after=3]`` directive in the assistant ``bench-rst``'s S3 prompt;
   - Sonic throttles 3 s in (a ``throttlingException`` frame ends the stream):
     ``[emulator:throttle-after=3]`` in ``bench-throttle``'s prompt;
   - the caller misbehaves: the load generator's ``--misbehave-share 1`` (malformed frames,
     abrupt TCP resets and silent callers, in equal shares).
   A crash of a call's pump task cannot be injected from outside the daemon, so it is not
   part of this run (the daemon's tests cover a crashing call beside a healthy one).

Healthy calls "lose no frame" when, call by call, the daemon's ``call_ended`` log line
(matched by Twilio ``callSid``) counts every frame the caller sent, no queue dropped a frame,
and every healthy call ended as its script meant. Latency percentiles compared (faulted /
fault-free, goal ≤ 1.10): time to first assistant audio and reply latency at the caller, the
99th-percentile inter-arrival of assistant audio, and the daemon's own added latency both
ways. Results: ``bench/out/isolation.json``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from typing import Any

from harness import (
    MACHINE_NOTE,
    OUT,
    Stack,
    call_ends,
    latency_summary,
    load_results,
    metric,
    open_stack,
    run_loadtest,
    scrape,
    twilio_call_sid,
    write_json,
)

from devkit.example_prompts import EXAMPLE_PROMPTS

GOAL_RATIO = 1.10
FAULT_PROMPTS = {
    "bench-rst": EXAMPLE_PROMPTS["esther"] + "\n[emulator:rst-after=3]\n",
    "bench-throttle": EXAMPLE_PROMPTS["esther"] + "\n[emulator:throttle-after=3]\n",
}


def _idle(stack: Stack, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while metric(scrape(stack.admin_url), "novavoice_calls_active") and (
        time.monotonic() < deadline
    ):
        time.sleep(0.5)


def run_once(
    stack: Stack, tag: str, healthy: int, faulted: int, *, length: float, ramp: float
) -> dict[str, Any]:
    """One run: ``healthy`` long calls and ``faulted`` redialling faulty slots."""
    ramp_s = (healthy + faulted) / ramp
    span = f"{ramp_s + length:.1f}"  # faulty slots redial for as long as healthy calls run
    before = scrape(stack.admin_url)
    healthy_json = OUT / f"isolation.{tag}.healthy.json"
    procs: list[subprocess.Popen[str]] = [
        run_loadtest(
            stack.url,
            healthy_json,
            "--calls",
            str(healthy),
            "--call-length",
            str(length),
            "--duration",
            f"{ramp_s + 1:.1f}",
            "--ramp",
            str(ramp),
            "--seed",
            "11",
        )
    ]
    groups = [faulted // 3 + (1 if i < faulted % 3 else 0) for i in range(3)]
    # Each group its own seed: the same seed would give the same Twilio callSids as the
    # healthy calls, and calls are matched to the daemon's log lines by callSid.
    fault_args = {
        "rst": ["--assistant", "bench-rst", "--seed", "101"],
        "throttle": ["--assistant", "bench-throttle", "--seed", "102"],
        "misbehave": ["--misbehave-share", "1", "--seed", "103"],
    }
    for (name, extra), n in zip(fault_args.items(), groups, strict=True):
        if n:
            path = OUT / f"isolation.{tag}.{name}.json"
            procs.append(
                run_loadtest(
                    stack.url,
                    path,
                    "--calls",
                    str(n),
                    "--duration",
                    span,
                    "--ramp",
                    str(ramp),
                    "--call-length",
                    "8",
                    *extra,
                )
            )
    for proc in procs:
        proc.wait(timeout=ramp_s + length + 180)
    _idle(stack)
    after = scrape(stack.admin_url)
    results = load_results(healthy_json)
    agg = results["aggregate"]
    ends = call_ends(stack.daemon_log)
    lost_in = lost_out = unmatched = 0
    for call in results["calls"]:
        end = ends.get(twilio_call_sid(call["seed"]))
        if end is None:
            unmatched += 1
            continue
        lost_in += max(0, call["frames_sent"] - end["frames_in"])
        lost_out += max(0, end["frames_out"] - call["frames_received"])
    faults: dict[str, Any] = {}
    for name, n in zip(fault_args, groups, strict=True):
        if n:
            fagg = load_results(OUT / f"isolation.{tag}.{name}.json")["aggregate"]
            faults[name] = {
                "calls": fagg["calls"],
                "outcomes": fagg["outcomes"],
                "close_codes": fagg["close_codes"],
                "misbehaviours": fagg["misbehaving_calls"],
            }
    ended = {
        reason: metric(after, "novavoice_calls_ended_total", reason=reason)
        - metric(before, "novavoice_calls_ended_total", reason=reason)
        for reason in (
            "hangup",
            "disconnected",
            "protocol_error",
            "sonic_error",
            "internal_error",
            "prompt_error",
        )
    }

    def dist(name: str) -> dict[str, Any]:
        return {k: agg[name][k] for k in ("count", "p50", "p99")}

    return {
        "healthy_calls": agg["calls"],
        "healthy_failed": agg["healthy_failed"],
        "healthy_outcomes": agg["outcomes"],
        "healthy_frames_sent": agg["frames_sent"],
        "healthy_frames_unsent": agg["healthy_frames_unsent"],
        "frames_late": agg["frames_late"],
        "frames_lost_in": lost_in,
        "frames_lost_out": lost_out,
        "calls_unmatched_in_daemon_log": unmatched,
        "queue_drops": metric(after, "novavoice_queue_drops_total")
        - metric(before, "novavoice_queue_drops_total"),
        "first_audio_s": dist("first_audio_s"),
        "reply_latency_s": dist("reply_latency_s"),
        "interarrival_p99_ms": dist("interarrival_p99_ms"),
        "underruns": agg["underruns"],
        "added_latency": latency_summary(before, after),
        "daemon_calls_ended": ended,
        "faulted_slots": dict(zip(("rst", "throttle", "misbehave"), groups, strict=True)),
        "faults": faults,
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def main() -> int:
    """Run fault-free and faulted, print the comparison and the goals."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--fault-share", type=float, default=0.05)
    parser.add_argument("--length", type=float, default=40.0, help="healthy call seconds")
    parser.add_argument("--ramp", type=float, default=25.0)
    args = parser.parse_args()
    faulted = max(3, round(args.calls * args.fault_share))
    print(MACHINE_NOTE)
    with open_stack("isolation", prompts=FAULT_PROMPTS) as stack:
        clean = run_once(stack, "clean", args.calls, 0, length=args.length, ramp=args.ramp)
        dirty = run_once(
            stack, "faulted", args.calls - faulted, faulted, length=args.length, ramp=args.ramp
        )
    rows: list[tuple[str, float | None, float | None]] = []
    for key in ("first_audio_s", "reply_latency_s", "interarrival_p99_ms"):
        for q in ("p50", "p99"):
            rows.append((f"{key} {q}", clean[key][q], dirty[key][q]))
    # The daemon's histograms cover every call, the faulty ones too: shown, not judged.
    info: list[tuple[str, float | None, float | None]] = []
    for d in ("in", "out"):
        for q in ("p50_ms", "p99_ms"):
            info.append(
                (
                    f"daemon added latency {d} {q} (all)",
                    clean["added_latency"][d][q],
                    dirty["added_latency"][d][q],
                )
            )
    print(
        f"isolation: {args.calls} calls; faulted run: {faulted} faulty slots "
        f"{dirty['faulted_slots']} redialling beside {args.calls - faulted} healthy calls"
    )
    for name, run in (("fault-free", clean), ("faulted", dirty)):
        print(
            f"  {name}: healthy calls {run['healthy_calls']}, failed {run['healthy_failed']}, "
            f"frames sent {run['healthy_frames_sent']}, lost in {run['frames_lost_in']}, "
            f"lost out {run['frames_lost_out']}, unsent {run['healthy_frames_unsent']}, "
            f"queue drops {run['queue_drops']:.0f}, "
            f"unmatched {run['calls_unmatched_in_daemon_log']}, "
            f"late {run['frames_late']}, daemon ends {run['daemon_calls_ended']}"
        )
    print(f"  faulty calls: {dirty['faults']}")
    worst = 0.0
    print(f"  {'healthy-call figure':36} {'fault-free':>12} {'faulted':>12} {'ratio':>7}")
    for name, a, b in rows + info:
        r = _ratio(b, a)
        if r is not None and (name, a, b) in rows:
            worst = max(worst, r)
        print(
            f"  {name:36} {a if a is not None else '-':>12.6} "
            f"{b if b is not None else '-':>12.6} {r if r is not None else '-':>7.3}"
        )
    no_loss = (
        dirty["healthy_failed"] == 0
        and dirty["frames_lost_in"] == 0
        and dirty["queue_drops"] == 0
        and dirty["healthy_frames_unsent"] == 0
        and dirty["calls_unmatched_in_daemon_log"] == 0
    )
    print("goals:")
    print(f"  [{'met' if no_loss else 'MISSED'}] healthy calls lose 0 frames under faults")
    print(
        f"  [{'met' if worst <= GOAL_RATIO else 'MISSED'}] healthy latency percentiles within "
        f"10 % of fault-free (worst ratio {worst:.3f})"
    )
    path = write_json(
        "isolation",
        {
            "machine": MACHINE_NOTE,
            "args": vars(args),
            "fault_free": clean,
            "faulted": dirty,
            "worst_ratio": worst,
            "no_loss": no_loss,
        },
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
