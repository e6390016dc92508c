"""The conversational call profile of issue 13: CPU per call-second, latencies and saturation,
with the bare relay floor and any number of daemon variants measured in the same run.

The profile: 30 s Twilio calls starting 0.25 s apart (``--ramp 4``); in each turn the
caller speaks 1.5 s, the emulator answers after its endpointing pause with 2 s of audio
(its default ``reply_seconds``), and every call barges in once (0.5 s into the first
reply). Local S3 (moto's server), the emulator, each daemon and the load generator
(``novavoice loadtest``) are processes of their own (``bench/harness.py``).

Reproduce (2 cores, quiet: about 45 s per variant and level, and per floor):

    .venv/bin/python bench/call_profile.py --levels 50                 # one daemon, the floor
    .venv/bin/python bench/call_profile.py --levels 50 --sink \
        --floor-impl trio-websocket,websockets     # the floors on two WebSocket stacks
    .venv/bin/python bench/call_profile.py --levels 50 --reps 2 \\
        --variant before@/tmp/nv-main --variant after                  # a code lever, A/B/A/B
    .venv/bin/python bench/call_profile.py --levels 50 --reps 2 --no-floor \\
        --variant c32:CALL_AUDIO_CHUNK_MS=32 --variant c64:CALL_AUDIO_CHUNK_MS=64
    .venv/bin/python bench/call_profile.py --levels 50 --profile        # py-spy, by package
        # (py-spy is not in the dev extra: .venv/bin/pip install py-spy)
    .venv/bin/python bench/call_profile.py --levels 50 --max --step 25  # then step up N

A variant is ``NAME[@SOURCE_TREE][:ENV=VALUE,...]``: the daemon runs from that tree (for
example ``git archive main | tar -x -C /tmp/nv-main``) with those settings. Variants are
interleaved: each repetition runs every variant once, in order, against the same S3 and
emulator. For each variant and level:

- CPU ms per call-second = the daemon's ΔCPU (``/proc/<pid>/stat``) over the window / the
  integral of its active calls (``novavoice_calls_active``, sampled every second);
- first audio = end of each caller utterance → first assistant audio message of the reply
  (every turn of every call of the level), p50/p95/p99, and the same with 2 calls
  ("unloaded", measured right after the daemon starts);
- clear = onset of the barge-in speech → Twilio ``clear`` received, p50/p95/p99;
- failed calls and their close codes.

The floor (``bench/relay_floor.py``: forwards carrier frames undecoded to a sink, no
Sonic work) gets the same load and the same CPU measurement. ``--sink`` also loads the sink
alone: the receive-only floor, the least a server must spend to read the caller's frames.
``--floor-impl`` measures the floors on the daemon's stack (trio-websocket) and/or on the
websockets library's trio API, to tell the WebSocket stack's share from trio's.
``--max`` then steps the first variant up by ``--step`` calls until a call fails, frames
fall late or first-audio p95 exceeds the unloaded p95 by 50 ms: the last level that held is
"calls at saturation"
(above 120 calls the starts come closer than 0.25 s, since 30 s calls cap concurrency at
4 × 30). Everything is written to ``bench/out/call_profile.json``.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
from harness import (
    MACHINE_NOTE,
    OUT,
    Backends,
    cpu_seconds,
    load_results,
    machine_busy_seconds,
    metric,
    open_backends,
    open_daemon,
    rss_bytes,
    run_loadtest,
    scrape,
    write_json,
)
from relay_floor import open_relay, open_sink

ROOT = Path(__file__).resolve().parents[1]
GOAL_CPU_MS = 4.0
SATURATION_P95_MARGIN_S = 0.050


@attrs.frozen
class Variant:
    """One daemon configuration: a name, a source tree and extra environment."""

    name: str
    root: Path = ROOT
    env: tuple[tuple[str, str], ...] = ()


def parse_variant(text: str) -> Variant:
    """``NAME[@TREE][:ENV=VALUE,...]`` → :class:`Variant`."""
    head, _, settings = text.partition(":")
    name, _, tree = head.partition("@")
    env = []
    for item in filter(None, settings.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"variant {text!r}: ENV=VALUE expected, got {item!r}")
        env.append((key, value))
    root = Path(tree).resolve() if tree else ROOT
    if not (root / "sessions" / "cli.py").is_file():
        raise argparse.ArgumentTypeError(f"variant {text!r}: {root} is not a NovaVoice tree")
    return Variant(name or "novavoice", root, tuple(env))


def quantiles(values: list[float]) -> dict[str, float | None]:
    """count, p50, p95, p99 (nearest rank) of ``values``, in milliseconds."""
    ordered = sorted(values)

    def q(p: float) -> float | None:
        if not ordered:
            return None
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1000

    return {"count": len(ordered), "p50": q(50), "p95": q(95), "p99": q(99)}


def _latencies(json_out: Path) -> dict[str, Any]:
    doc = load_results(json_out)
    calls = doc["calls"]
    replies = [t for c in calls for t in c["reply_latencies_s"]]
    clears = [t for c in calls for t in c["barge_in_reactions_s"]]
    codes = collections.Counter(str(c["close_code"]) for c in calls if not c["ok"])
    return {
        "calls": len(calls),
        "failed": sum(not c["ok"] for c in calls),
        "failed_close_codes": dict(codes),
        "frames_late": sum(c["frames_late"] for c in calls),
        "frames_sent": sum(c["frames_sent"] for c in calls),
        "barge_ins": sum(c["barge_ins"] for c in calls),
        "barge_ins_missed": sum(c["barge_ins_missed"] for c in calls),
        "first_audio_ms": quantiles(replies),
        "clear_ms": quantiles(clears),
    }


def _load_args(args: argparse.Namespace, calls: int, duration: float, ramp: float) -> list[str]:
    return [
        "--calls",
        str(calls),
        "--ramp",
        f"{ramp:g}",
        "--duration",
        f"{duration:.1f}",
        "--call-length",
        f"{args.call_length:g}",
        "--utterance",
        f"{args.utterance:g}",
        "--barge-in-share",
        "1",
        "--seed",
        "13",
    ]


def unloaded(args: argparse.Namespace, url: str, tag: str) -> dict[str, Any]:
    """Two calls on an idle daemon (also the warm-up: imports, Sonic TLS, prompt cache)."""
    json_out = OUT / f"call_profile.{tag}.unloaded.json"
    load = run_loadtest(
        url, json_out, "--calls", "2", "--ramp", "4", "--duration", "0.4",
        "--call-length", "14", "--utterance", f"{args.utterance:g}",
        "--barge-in-share", "1", "--seed", "12",
    )  # fmt: skip
    load.wait(timeout=120)
    return _latencies(json_out)


def _spy(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    py_spy = Path(sys.executable).parent / "py-spy"
    return subprocess.Popen(
        [str(py_spy), "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "100",
         "-f", "raw", "--nonblocking", "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def measure(
    args: argparse.Namespace,
    url: str,
    pid: int,
    active: Callable[[], int],
    calls: int,
    tag: str,
    profile: Path | None = None,
    frames: Callable[[], int] | None = None,
) -> dict[str, Any]:
    """Run ``calls`` slots of the profile; measure ``args.window`` s once they are up."""
    ramp = max(args.ramp, calls / args.call_length)
    ramp_s = calls / ramp
    json_out = OUT / f"call_profile.{tag}.json"
    duration = ramp_s + args.settle + args.window + 2
    load = run_loadtest(url, json_out, *_load_args(args, calls, duration, ramp))
    try:
        deadline = time.monotonic() + ramp_s * 2 + 30
        while active() < 0.95 * calls:
            if time.monotonic() > deadline or load.poll() is not None:
                raise RuntimeError(f"{tag}: {active()}/{calls} calls came up")
            time.sleep(0.25)
        time.sleep(args.settle)
        spy = _spy(pid, args.window, profile) if profile is not None else None
        samples = [active()]
        frames0 = frames() if frames else 0
        cpu0, busy0, t0 = cpu_seconds(pid), machine_busy_seconds(), time.monotonic()
        while time.monotonic() - t0 < args.window:
            time.sleep(1.0)
            samples.append(active())
        cpu1, busy1, t1 = cpu_seconds(pid), machine_busy_seconds(), time.monotonic()
        frames1 = frames() if frames else 0
        rss = rss_bytes(pid)
        if spy is not None:
            spy.wait(timeout=60)
    finally:
        load.wait(timeout=args.call_length + duration + 120)
    elapsed = t1 - t0
    call_seconds = sum(samples) / len(samples) * elapsed
    out = {
        "calls": calls,
        "ramp_per_s": ramp,
        "window_s": elapsed,
        "active_min": min(samples),
        "active_max": max(samples),
        "cpu_s": cpu1 - cpu0,
        "cores_used": (cpu1 - cpu0) / elapsed,
        "machine_cores_busy": (busy1 - busy0) / elapsed,
        "cpu_ms_per_call_second": (cpu1 - cpu0) * 1000 / call_seconds,
        "rss_bytes": rss,
    }
    if frames:
        # A real caller sends 50 frames a second; a starved load generator sends fewer.
        out["frames_in_per_call_second"] = (frames1 - frames0) / call_seconds
    out.update(_latencies(json_out))
    return out


def _ms(value: float | None) -> str:
    return "   -  " if value is None else f"{value:6.1f}"


def line(name: str, r: dict[str, Any]) -> str:
    """One result row."""
    fa, cl = r.get("first_audio_ms", {}), r.get("clear_ms", {})
    return (
        f"{name:<22} N={r['calls']:<4} active {r['active_min']}-{r['active_max']:<4} "
        f"CPU {r['cpu_ms_per_call_second']:6.2f} ms/call-s ({r['cores_used']:.2f} cores, "
        f"machine {r['machine_cores_busy']:.2f} busy; caller frames "
        f"{r.get('frames_in_per_call_second', 0):.0f}/s of 50, late "
        f"{r.get('frames_late', 0) / max(1, r.get('frames_sent', 0)):.0%})  first audio p50/p95 "
        f"{_ms(fa.get('p50'))}/{_ms(fa.get('p95'))} ms  clear p50/p95 "
        f"{_ms(cl.get('p50'))}/{_ms(cl.get('p95'))} ms  failed {r.get('failed', 0)}"
        f"{' ' + str(r['failed_close_codes']) if r.get('failed') else ''}"
    )


# --- py-spy raw output, by package ---------------------------------------------------------------


def package_of(frame: str) -> str:
    """``func (path:line)`` → its top-level package (``trio``, ``actors``, ``wsproto``), with
    standard-library modules as ``stdlib:<module>`` (py-spy shortens paths to the part
    after their ``sys.path`` entry)."""
    path = frame.rpartition(" (")[2].rstrip(")").rsplit(":", 1)[0]
    if path.startswith("<frozen "):
        return "stdlib:" + path.removeprefix("<frozen ").rstrip(">").split(".")[0]
    parts = Path(path).parts
    if path.startswith("/"):
        for top in ("actors", "sessions", "devkit", "site-packages"):
            if top in parts:
                i = parts.index(top)
                parts = parts[i + 1 :] if top == "site-packages" else parts[i:]
                break
        else:
            parts = parts[-1:]
    top = parts[0].removesuffix(".py") if parts else "?"
    return f"stdlib:{top}" if top in sys.stdlib_module_names else top


def summarize_profile(path: Path, top: int = 12) -> dict[str, Any]:
    """Self and inclusive shares of samples, by package, and the top self frames."""
    self_pkg: collections.Counter[str] = collections.Counter()
    incl_pkg: collections.Counter[str] = collections.Counter()
    self_fn: collections.Counter[str] = collections.Counter()
    total = 0
    for raw in path.read_text().splitlines():
        stack, _, count = raw.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if " (" in f]
        if not frames:
            continue
        total += n
        leaf = frames[-1]
        self_pkg[package_of(leaf)] += n
        fn, _, where = leaf.partition(" (")
        self_fn[f"{fn} {where.rstrip(')').split('/')[-1]}"] += n
        for pkg in {package_of(f) for f in frames}:
            incl_pkg[pkg] += n

    def shares(c: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(k, v / total) for k, v in c.most_common(top)] if total else []

    return {
        "samples": total,
        "self_by_package": shares(self_pkg),
        "inclusive_by_package": shares(incl_pkg),
        "self_by_function": shares(self_fn),
    }


def print_profile(name: str, summary: dict[str, Any]) -> None:
    """The package table of one profile."""
    print(f"  py-spy {name}: {summary['samples']} samples")
    print("    self by package:      " + ", ".join(
        f"{k} {v:.1%}" for k, v in summary["self_by_package"]))  # fmt: skip
    print("    inclusive by package: " + ", ".join(
        f"{k} {v:.1%}" for k, v in summary["inclusive_by_package"]))  # fmt: skip
    print("    self by function:     " + ", ".join(
        f"{k} {v:.1%}" for k, v in summary["self_by_function"][:10]))  # fmt: skip


# --- the run -------------------------------------------------------------------------------------


@contextmanager
def _daemon(backends: Backends, variant: Variant, tag: str) -> Iterator[Any]:
    with open_daemon(tag, backends, env=dict(variant.env), root=variant.root) as daemon:
        yield daemon


def main() -> int:
    """Measure every variant (interleaved), the floor, and optionally saturation."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="50", help="concurrent calls, comma-separated")
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured per level")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after the ramp")
    parser.add_argument("--ramp", type=float, default=4.0, help="call starts per second")
    parser.add_argument("--call-length", type=float, default=30.0, help="seconds per call")
    parser.add_argument("--utterance", type=float, default=1.5, help="seconds per utterance")
    parser.add_argument("--reps", type=int, default=1, help="repetitions of every variant")
    parser.add_argument(
        "--variant", action="append", type=parse_variant, help="NAME[@TREE][:ENV=V,...]"
    )
    parser.add_argument("--no-floor", action="store_true", help="skip the bare relay")
    parser.add_argument(
        "--sink",
        action="store_true",
        help="also load the sink alone: the receive-only floor (read every frame, send none)",
    )
    parser.add_argument(
        "--floor-impl",
        default="trio-websocket",
        help="the relay's WebSocket stack(s), comma-separated: trio-websocket (the daemon's), "
        "websockets (the websockets library's trio API, dev extra)",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy each variant once")
    parser.add_argument("--max", action="store_true", help="then step up until saturation")
    parser.add_argument("--step", type=int, default=25, help="calls added per --max level")
    args = parser.parse_args()
    if args.profile and not (Path(sys.executable).parent / "py-spy").exists():
        parser.error("--profile needs py-spy beside this python: .venv/bin/pip install py-spy")
    variants: list[Variant] = args.variant or [Variant("novavoice")]
    levels = [int(x) for x in args.levels.split(",")]
    print(MACHINE_NOTE)
    print(f"load average at start: {os.getloadavg()}")
    results: dict[str, Any] = {
        "machine": MACHINE_NOTE,
        "runs": [],
        "unloaded": [],
        "profiles": {},
        "floors": {},
    }
    results["args"] = {k: str(v) for k, v in vars(args).items()}
    with open_backends("call_profile") as backends:
        for rep in range(args.reps):
            for variant in variants:
                tag = f"{variant.name}.r{rep}"
                with _daemon(backends, variant, f"call_profile.{tag}") as daemon:
                    idle = unloaded(args, daemon.url, tag)
                    idle["variant"], idle["rep"] = variant.name, rep
                    results["unloaded"].append(idle)
                    fa, cl = idle["first_audio_ms"], idle["clear_ms"]
                    print(
                        f"{variant.name:<22} unloaded: first audio p50 {_ms(fa['p50'])} ms, "
                        f"clear p50 {_ms(cl['p50'])} ms, RSS after warm-up "
                        f"{rss_bytes(daemon.pid) / 2**20:.1f} MiB"
                    )

                    def active(d: Any = daemon) -> int:
                        return int(metric(scrape(d.admin_url), "novavoice_calls_active"))

                    def frames_in(d: Any = daemon) -> int:
                        samples = scrape(d.admin_url)
                        return int(metric(samples, "novavoice_frames_total", direction="in"))

                    for i, n in enumerate(levels):
                        spy = None
                        if args.profile and rep == 0 and i == 0:
                            spy = OUT / f"call_profile.{variant.name}.pyspy.txt"
                        r = measure(
                            args, daemon.url, daemon.pid, active, n, f"{tag}.{n}", spy, frames_in
                        )
                        r["variant"], r["rep"], r["profiled"] = variant.name, rep, spy is not None
                        results["runs"].append(r)
                        print(line(variant.name + (" (py-spy)" if spy else ""), r), flush=True)
                        if spy is not None and spy.exists():
                            summary = summarize_profile(spy)
                            results["profiles"][variant.name] = summary
                            print_profile(variant.name, summary)
                    if args.max and rep == args.reps - 1 and variant is variants[0]:
                        results["saturation"] = saturation(args, daemon, active, frames_in, r, idle)
        floors = [] if args.no_floor else args.floor_impl.split(",")
        kinds = [(impl, kind) for impl in floors for kind in ("relay", "sink")[: 1 + args.sink]]
        for impl, kind in kinds:
            with (open_relay if kind == "relay" else open_sink)(OUT, impl) as relay:
                n = max(levels)
                r = measure(
                    args, relay.url, relay.pid, lambda: relay.stats().active, n,
                    f"floor.{impl}.{kind}", frames=lambda: relay.stats().frames,
                )  # fmt: skip
                name = "bare relay floor" if kind == "relay" else "receive-only floor"
                name += "" if impl == "trio-websocket" else f" ({impl})"
                r["variant"] = name
                results["floors"][f"{impl}.{kind}"] = r
                if (impl, kind) == ("trio-websocket", "relay"):  # the daemon's stack: ratios
                    results["floor"] = r
                print(line(name, r), flush=True)
    print_summary(results, variants)
    print(f"results: {write_json('call_profile', results)}")
    return 0


def saturation(
    args: argparse.Namespace, daemon: Any, active: Callable[[], int],
    frames: Callable[[], int], last: dict[str, Any], idle: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """Step up from the last level measured (``last``) until calls fail, frames are late or
    first-audio p95 drifts 50 ms; the last level itself counts when it held."""
    base_p95 = idle["first_audio_ms"]["p95"] or 0.0

    def holds(r: dict[str, Any]) -> bool:
        p95 = r["first_audio_ms"]["p95"] or 0.0
        late = r["frames_late"] > 0.01 * max(1, r["frames_sent"])
        return not r["failed"] and not late and p95 <= base_p95 + SATURATION_P95_MARGIN_S * 1000

    n, steps = last["calls"], []
    held = n if holds(last) else None
    while held == n:
        n += args.step
        r = measure(args, daemon.url, daemon.pid, active, n, f"max.{n}", frames=frames)
        steps.append(r)
        print(line("saturation step", r), flush=True)
        if holds(r):
            held = n
    print(f"calls at saturation: {held} (first to break: {n}; unloaded p95 {base_p95:.0f} ms)")
    return {"calls_held": held, "broke_at": n, "steps": steps}


def print_summary(results: dict[str, Any], variants: list[Variant]) -> None:
    """Mean per variant and level over repetitions, and the ratios to the first variant."""
    print("summary (mean over repetitions; CPU ms per call-second, latencies ms):")
    by: dict[tuple[str, int], list[dict[str, Any]]] = collections.defaultdict(list)
    for r in results["runs"]:
        by[r["variant"], r["calls"]].append(r)
    floor = results.get("floor")
    first = variants[0].name
    for (name, n), rows in sorted(by.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        cpu = [r["cpu_ms_per_call_second"] for r in rows]
        mean = sum(cpu) / len(cpu)

        def med(key: str, q: str, rows: list[dict[str, Any]] = rows) -> float | None:
            vals = sorted(v for r in rows if (v := r[key][q]) is not None)
            return vals[len(vals) // 2] if vals else None

        base = by.get((first, n))
        ratio = ""
        if base and name != first:
            b = sum(r["cpu_ms_per_call_second"] for r in base) / len(base)
            ratio = f"  {mean / b:.2f}x {first}"
        if floor and floor["calls"] == n:
            ratio += f"  {mean / floor['cpu_ms_per_call_second']:.1f}x floor"
        print(
            f"  {name:<20} N={n:<4} CPU {mean:6.2f} (each: {', '.join(f'{c:.2f}' for c in cpu)})"
            f"  first audio p50 {_ms(med('first_audio_ms', 'p50'))} p95 "
            f"{_ms(med('first_audio_ms', 'p95'))}  clear p50 {_ms(med('clear_ms', 'p50'))} p95 "
            f"{_ms(med('clear_ms', 'p95'))}  failed {sum(r['failed'] for r in rows)}{ratio}"
        )
    for r in results["floors"].values():
        print(f"  {r['variant']:<20} N={r['calls']:<4} CPU "
              f"{r['cpu_ms_per_call_second']:6.2f}")  # fmt: skip
    print(f"  goal: ≤ {GOAL_CPU_MS} ms CPU per call-second on this profile")


if __name__ == "__main__":
    sys.exit(main())
