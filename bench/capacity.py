"""Capacity: the daemon's CPU per call-second and memory per call at 100 and 300 calls, and the
floor (a bare relay) measured the same way in the same run.

Reproduce (about 4 minutes on 2 cores):

    .venv/bin/python bench/capacity.py                       # 100 and 300 calls, then the floor
    .venv/bin/python bench/capacity.py --levels 50 --window 10   # quick check
    .venv/bin/python bench/capacity.py --max                  # then step up until it breaks

Local S3, emulator and daemon run as separate processes (``bench/harness.py``). For each
level, ``novavoice loadtest`` (its own process) ramps up N Twilio calls that outlast the
measurement window; once all N are up and settled, the daemon's CPU time and RSS are read from
``/proc`` and its ``/metrics`` scraped at the start and end of the window. Figures:

- CPU ms per call-second = ΔCPU / ∫ active calls dt (active calls sampled every second);
- CPU µs per carrier frame = ΔCPU / Δ frames received from the carriers;
- RSS per call = (RSS at N calls − RSS before the first level, after a warm-up) / N, and
  between levels (RSS₃₀₀ − RSS₁₀₀) / 200 (the marginal cost of an added call);
- added latency p50/p99 both ways from the daemon's ``novavoice_added_latency_seconds``
  histogram (stamped inside the daemon), over the window only.

The floor (``bench/relay_floor.py``) gets the same load at the highest level and the same
measurement; NovaVoice's CPU per frame is reported as a ratio to it. Results:
``bench/out/capacity.json``. Goals (issue 5): ≤ 2 ms CPU per call-second, ≤ 256 KB per call,
added latency p99 ≤ 5 ms at 300 calls.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from harness import (
    MACHINE_NOTE,
    OUT,
    Samples,
    Stack,
    cpu_seconds,
    fmt_ms,
    histogram_delta,
    histogram_quantile,
    latency_summary,
    load_results,
    machine_busy_seconds,
    metric,
    open_stack,
    rss_bytes,
    run_loadtest,
    scrape,
    write_json,
)
from relay_floor import open_relay

GOAL_CPU_MS = 2.0
GOAL_RSS_KB = 256.0
GOAL_P99_MS = 5.0


@attrs.frozen
class Probe:
    """How to read one target: its pid, and (active calls, carrier frames received)."""

    pid: int
    counts: Callable[[], tuple[int, int]]
    scrape: Callable[[], Samples] | None = None
    others: tuple[int, ...] = ()
    """Processes beside it whose CPU use is reported too (the emulator)."""


def daemon_probe(stack: Stack) -> Probe:
    """The daemon, read through ``/proc`` and ``/metrics``."""

    def counts() -> tuple[int, int]:
        s = scrape(stack.admin_url)
        return int(metric(s, "novavoice_calls_active")), int(
            metric(s, "novavoice_frames_total", direction="in")
        )

    return Probe(stack.daemon_pid, counts, lambda: scrape(stack.admin_url), (stack.emulator_pid,))


def measure_level(
    probe: Probe,
    url: str,
    calls: int,
    *,
    window: float,
    ramp: float,
    settle: float,
    tag: str,
    profile: Path | None = None,
) -> dict[str, Any]:
    """Ramp up ``calls`` calls, measure ``window`` seconds at full load, return the figures."""
    ramp_s = calls / ramp
    length = ramp_s + settle + window + 20  # outlasts the window even if the ramp is slow
    json_out = OUT / f"capacity.{tag}.loadtest.json"
    load = run_loadtest(
        url,
        json_out,
        "--calls",
        str(calls),
        "--ramp",
        str(ramp),
        "--duration",
        f"{ramp_s + 1:.1f}",
        "--call-length",
        f"{length:.1f}",
        "--seed",
        "5",
    )
    try:
        deadline = time.monotonic() + ramp_s * 3 + 30
        while probe.counts()[0] < calls:
            if time.monotonic() > deadline or load.poll() is not None:
                raise RuntimeError(f"{tag}: {probe.counts()[0]}/{calls} calls came up")
            time.sleep(0.5)
        time.sleep(settle)
        before = probe.scrape() if probe.scrape else None
        active0, frames0 = probe.counts()
        cpu0, t0, load_cpu0 = cpu_seconds(probe.pid), time.monotonic(), cpu_seconds(load.pid)
        others0 = sum(cpu_seconds(p) for p in probe.others)
        busy0 = machine_busy_seconds()
        spy = None
        if profile is not None:
            spy = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "-p",
                    str(probe.pid),
                    "-d",
                    str(int(window)),
                    "-f",
                    "raw",
                    "--function",
                    "-o",
                    str(profile),
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        active_samples = [active0]
        rss_samples = [rss_bytes(probe.pid)]
        while time.monotonic() - t0 < window:
            time.sleep(1.0)
            active_samples.append(probe.counts()[0])
            rss_samples.append(rss_bytes(probe.pid))
        cpu1, t1, load_cpu1 = cpu_seconds(probe.pid), time.monotonic(), cpu_seconds(load.pid)
        others1 = sum(cpu_seconds(p) for p in probe.others)
        busy1 = machine_busy_seconds()
        if spy is not None:
            spy.wait(timeout=60)
        _, frames1 = probe.counts()
        after = probe.scrape() if probe.scrape else None
    finally:
        if load.poll() is None:
            load.wait(timeout=length + ramp_s + 120)
    elapsed = t1 - t0
    call_seconds = sum(active_samples) / len(active_samples) * elapsed
    cpu = cpu1 - cpu0
    frames = frames1 - frames0
    out: dict[str, Any] = {
        "calls": calls,
        "window_s": elapsed,
        "active_min": min(active_samples),
        "active_max": max(active_samples),
        "cpu_s": cpu,
        "cores_used": cpu / elapsed,
        "call_seconds": call_seconds,
        "cpu_ms_per_call_second": cpu * 1000 / call_seconds,
        "frames_in": frames,
        "cpu_us_per_frame_in": cpu * 1e6 / frames if frames else None,
        # A real call delivers 50 caller frames a second; when the load generator falls
        # behind (2 shared cores), this is the honest per-call-second figure.
        "cpu_ms_per_realtime_call_second": cpu * 1e3 * 50 / frames if frames else None,
        "rss_bytes": max(rss_samples),
        "loadtest_cores_used": (load_cpu1 - load_cpu0) / elapsed,
        "emulator_cores_used": (others1 - others0) / elapsed,
        "machine_cores_busy": (busy1 - busy0) / elapsed,
        "real_time_frames_per_call_second": frames / call_seconds,
    }
    if before is not None and after is not None:
        out["added_latency"] = latency_summary(before, after)
        frames_out = metric(after, "novavoice_frames_total", direction="out") - metric(
            before, "novavoice_frames_total", direction="out"
        )
        out["frames_out"] = frames_out
        out["cpu_us_per_frame_both"] = cpu * 1e6 / (frames + frames_out) if frames else None
        lag = histogram_delta(before, after, "novavoice_event_loop_lag_seconds")
        p99 = histogram_quantile(0.99, lag)
        out["loop_lag_p99_ms"] = None if p99 is None else p99 * 1000
        out["queue_drops"] = metric(after, "novavoice_queue_drops_total") - metric(
            before, "novavoice_queue_drops_total"
        )
    agg = load_results(json_out)["aggregate"]
    out["loadtest"] = {k: agg[k] for k in ("calls", "ok", "failed", "frames_late", "outcomes")}
    out["loadtest"]["first_audio_s"] = agg["first_audio_s"]
    return out


def _frame_name(frame: str) -> str:
    """``func (path/to/file.py:12)`` → ``func file.py``."""
    func, _, where = frame.partition(" (")
    return f"{func} {where.rstrip(')').split('/')[-1].split(':')[0]}"


def summarize_profile(path: Path, top: int = 25) -> list[tuple[str, float]]:
    """py-spy's collapsed stacks → the ``top`` frames by share of samples (inclusive)."""
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = {_frame_name(f) for f in stack.split(";")}
        for frame in frames:
            inclusive[frame] += n
    return [(frame, n / total) for frame, n in inclusive.most_common(top)]


def wait_idle(probe: Probe, timeout: float = 60) -> None:
    """Wait until the target has no call in progress."""
    deadline = time.monotonic() + timeout
    while probe.counts()[0] and time.monotonic() < deadline:
        time.sleep(0.5)


def print_level(name: str, level: dict[str, Any], baseline_rss: int) -> None:
    """One level's figures on stdout."""
    per_call_kb = (level["rss_bytes"] - baseline_rss) / level["calls"] / 1024
    level["rss_kb_per_call"] = per_call_kb
    print(
        f"{name} @ {level['calls']} calls (active {level['active_min']}-{level['active_max']}, "
        f"{level['window_s']:.0f} s window): CPU {level['cores_used']:.2f} cores = "
        f"{level['cpu_ms_per_call_second']:.2f} ms per call-second as run, "
        f"{level['cpu_ms_per_realtime_call_second']:.2f} ms per real-time call-second, "
        f"{level['cpu_us_per_frame_in'] or 0:.1f} µs per carrier frame in; "
        f"RSS {level['rss_bytes'] / 2**20:.1f} MiB = {per_call_kb:.0f} KiB per call over idle; "
        f"load generator {level['loadtest_cores_used']:.2f} cores, "
        f"emulator {level['emulator_cores_used']:.2f} cores, "
        f"whole machine {level['machine_cores_busy']:.2f} of {os.cpu_count()} cores busy; "
        f"caller frames arrived at {level['real_time_frames_per_call_second']:.0f}/s per call "
        f"(real time: 50), "
        f"frames late {level['loadtest']['frames_late']}, failed {level['loadtest']['failed']}"
    )
    if "added_latency" in level:
        lat = level["added_latency"]
        print(
            f"    added latency in  p50 {fmt_ms(lat['in']['p50_ms'])}  p99 "
            f"{fmt_ms(lat['in']['p99_ms'])}  (n={lat['in']['count']:.0f});  out p50 "
            f"{fmt_ms(lat['out']['p50_ms'])}  p99 {fmt_ms(lat['out']['p99_ms'])}  "
            f"(n={lat['out']['count']:.0f});  loop lag p99 {fmt_ms(level['loop_lag_p99_ms'])};  "
            f"queue drops {level['queue_drops']:.0f}"
        )


def _verdict(ok: bool, text: str) -> str:
    return f"  [{'met' if ok else 'MISSED'}] {text}"


def main() -> int:
    """Run the levels and the floor; print figures, ratios and goals."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="100,300", help="concurrent calls, comma-separated")
    parser.add_argument("--window", type=float, default=30.0, help="seconds measured per level")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after the ramp")
    parser.add_argument("--ramp", type=float, default=25.0, help="call starts per second")
    parser.add_argument(
        "--max",
        action="store_true",
        help="then add 100 calls per level "
        "until calls fail, frames are late or loop lag p99 passes 50 ms",
    )
    parser.add_argument("--no-floor", action="store_true", help="skip the bare relay")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the daemon during the first level's window (pip install py-spy)",
    )
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    print(MACHINE_NOTE)
    results: dict[str, Any] = {"machine": MACHINE_NOTE, "levels": [], "args": vars(args)}
    with open_stack("capacity") as stack:
        probe = daemon_probe(stack)
        # Warm-up: imports, the first TLS connection to Sonic, the prompt cache.
        warm = run_loadtest(
            stack.url,
            OUT / "capacity.warmup.json",
            "--calls",
            "5",
            "--duration",
            "2",
            "--call-length",
            "4",
            "--ramp",
            "10",
        )
        warm.wait(timeout=60)
        wait_idle(probe)
        time.sleep(2)
        baseline = rss_bytes(stack.daemon_pid)
        results["baseline_rss_bytes"] = baseline
        print(f"daemon idle after warm-up: RSS {baseline / 2**20:.1f} MiB")
        n = levels[0]
        i = 0
        while True:
            level = measure_level(
                probe,
                stack.url,
                n,
                window=args.window,
                ramp=args.ramp,
                settle=args.settle,
                tag=f"novavoice{n}",
                profile=OUT / "capacity.profile.txt" if args.profile and i == 0 else None,
            )
            print_level("novavoice", level, baseline)
            if args.profile and i == 0:
                level["profile_top"] = summarize_profile(OUT / "capacity.profile.txt")
                print("    py-spy, share of daemon samples (inclusive):")
                for frame, share in level["profile_top"]:
                    print(f"      {share:6.1%}  {frame}")
            results["levels"].append(level)
            wait_idle(probe)
            i += 1
            if i < len(levels):
                n = levels[i]
                continue
            broke = (
                level["loadtest"]["failed"] > 0
                or level["loadtest"]["frames_late"] > 0.01 * level["frames_in"]
                or (level.get("loop_lag_p99_ms") or 0) > 50
            )
            if not args.max or broke:
                break
            n += 100
    lv = results["levels"]
    if len(lv) >= 2:
        a, b = lv[0], lv[-1]
        marginal = (b["rss_bytes"] - a["rss_bytes"]) / (b["calls"] - a["calls"]) / 1024
        results["rss_kb_per_added_call"] = marginal
        print(f"RSS per added call between {a['calls']} and {b['calls']} calls: {marginal:.0f} KiB")
    if not args.no_floor:
        top = max(levels)
        with open_relay(OUT) as relay:

            def relay_counts() -> tuple[int, int]:
                counters = relay.stats()
                return counters.active, counters.frames

            relay_probe = Probe(relay.pid, relay_counts)
            idle = rss_bytes(relay.pid)
            floor = measure_level(
                relay_probe,
                relay.url,
                top,
                window=args.window,
                ramp=args.ramp,
                settle=args.settle,
                tag=f"relay{top}",
            )
        print_level("bare relay", floor, idle)
        results["floor"] = floor
        nv = next(x for x in lv if x["calls"] == top)
        ratio = nv["cpu_us_per_frame_in"] / floor["cpu_us_per_frame_in"]
        results["cpu_per_frame_ratio"] = ratio
        results["cpu_per_call_second_ratio"] = (
            nv["cpu_ms_per_call_second"] / floor["cpu_ms_per_call_second"]
        )
        print(
            f"NovaVoice / bare relay at {top} calls: {ratio:.1f}x CPU per carrier frame in "
            f"(NovaVoice also sends {nv.get('frames_out', 0):.0f} frames out and one Sonic "
            f"event per frame in; the relay forwards {floor['frames_in']} frames undecoded)"
        )
    print("goals:")
    for level in lv:
        c = level["cpu_ms_per_realtime_call_second"]
        print(
            _verdict(
                c <= GOAL_CPU_MS,
                f"{level['calls']} calls: {c:.2f} ms CPU per real-time call-second (50 "
                f"frames/s; goal ≤ {GOAL_CPU_MS}; {c / GOAL_CPU_MS:.2f}x)",
            )
        )
        kb = level["rss_kb_per_call"]
        print(
            _verdict(
                kb <= GOAL_RSS_KB,
                f"{level['calls']} calls: {kb:.0f} KiB per call "
                f"(goal ≤ {GOAL_RSS_KB:.0f}; {kb / GOAL_RSS_KB:.2f}x)",
            )
        )
        lat = level.get("added_latency")
        if lat:
            worst = max(lat["in"]["p99_ms"] or 0, lat["out"]["p99_ms"] or 0)
            print(
                _verdict(
                    worst <= GOAL_P99_MS,
                    f"{level['calls']} calls: added latency p99 "
                    f"{worst:.2f} ms, worst direction (goal ≤ {GOAL_P99_MS})",
                )
            )
    path = write_json("capacity", results)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
