"""Bedrock fault injection: N calls, a share of their streams faulted mid-call, the share recovered.

Runs in one process, on 127.0.0.1: the local S3 (moto, seeded with the example prompts), the
Nova Sonic emulator and the daemon (default recovery settings unless given). The emulator
gives each accepted stream, with probability ``--fault-share`` × (number of kinds), one
mid-stream fault 1-4 s after it opened; the kinds take turns, so each kind hits about
``--fault-share`` of the streams: RST_STREAM, GOAWAY then a dropped connection (every stream
on that connection fails with it), ``modelStreamErrorException``, ``throttlingException``,
``internalServerException``, a bad CRC, a stall. Replacement streams are drawn like any
other, so a recovered call can be faulted again.

Calls are simulated Twilio callers (real-time 20 ms frames, speech-like utterances, waiting
for each reply), ``--concurrency`` at a time. Prints: calls and how they ended, faults
injected by kind, transient failures the daemon saw by reason and outcome, the recovery share
(recovered / (recovered + failed): each failure has exactly one final outcome), faulted calls
that still ended normally, turns the caller got no reply to, and frames dropped.

    .venv/bin/python bench/fault_recovery.py --calls 60 --fault-share 0.05
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections import Counter
from typing import Any

import trio

from actors.s3_prompt_store import make_s3_client
from actors.sonic.credentials import StaticCredentialsProvider
from actors.sonic.recovery import RECOVERY_REASONS
from actors.sonic.signing import Credentials
from devkit.emulator import EmulatorConfig, StreamPlan, open_emulator
from devkit.emulator.config import FAULT_KINDS
from devkit.example_prompts import seed_example_prompts
from devkit.local_s3 import LocalS3, run_local_s3
from devkit.simcall import CallScript, run_simulated_call
from devkit.simcall.report import CallReport
from sessions.config import Settings
from sessions.metrics import RECOVERY_OUTCOMES
from sessions.serve import DaemonOverrides, open_daemon

ACCESS_KEY = "AKIDFAULTBENCH"
SECRET_KEY = "fault-bench-secret-key"


class _CallEnds(logging.Handler):
    """Keeps the daemon's call-end lines (their structured fields)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[dict[str, Any]] = []

        self.failures: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "event", None)
        if event == "call_ended":
            self.lines.append(dict(record.__dict__))
        elif event == "call_failed":
            self.failures[f"{getattr(record, 'error', '?')}: {getattr(record, 'detail', '')}"] += 1


async def run(args: argparse.Namespace, s3: LocalS3) -> int:
    kinds = tuple(args.kinds.split(",")) if args.kinds else FAULT_KINDS
    config = EmulatorConfig(
        credentials={ACCESS_KEY: SECRET_KEY},
        pause_scale=0.2,
        plan=StreamPlan(time_to_first_audio=0.1, reply_seconds=1.0, audio_speed=4.0),
        fault_fraction=min(1.0, args.fault_share * len(kinds)),
        fault_kinds=kinds,
        fault_window=(1.0, 4.0),
        seed=args.seed,
    )
    # A GOAWAY fault fails every stream of its connection: how many that is depends on
    # how many calls share a connection (SONIC_STREAMS_PER_CONNECTION).
    sonic: dict[str, Any] = {
        "max_connections": args.max_connections,
        "streams_per_connection": args.streams_per_connection,
    }
    if args.stall_timeout_ms is not None:
        sonic["stall_timeout"] = args.stall_timeout_ms / 1000
    settings = Settings().replace(
        listen={
            "address": ("127.0.0.1", 0),
            "admin_address": ("127.0.0.1", 0),
            "drain_timeout": 2.0,
        },
        sonic=sonic,
    )
    script = CallScript(length=args.length, utterance_seconds=(0.8, 1.4), reply_timeout=20.0)
    ends = _CallEnds()
    for name in ("novavoice.supervisor", "novavoice.call"):
        logging.getLogger(name).addHandler(ends)
        logging.getLogger(name).setLevel(logging.INFO)
    reports: list[CallReport] = []
    async with open_emulator(config) as emulator:
        overrides = DaemonOverrides(
            sonic_endpoint_url=emulator.url,
            sonic_ca_file=emulator.ca_file,
            sonic_credentials=StaticCredentialsProvider(
                Credentials(access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY)
            ),
            s3_endpoint_url=s3.endpoint_url,
            s3_static_credentials=("local", "local"),
        )
        async with open_daemon(settings, overrides) as daemon:
            limiter = trio.CapacityLimiter(args.concurrency)

            async def one(n: int) -> None:
                async with limiter:
                    reports.append(
                        await run_simulated_call(
                            daemon.url, assistant="esther", script=script, seed=n
                        )
                    )

            async with trio.open_nursery() as nursery:
                for n in range(args.calls):
                    nursery.start_soon(one, n)
                    await trio.sleep(args.stagger)
            registry = daemon.metrics.registry

            def value(name: str, **labels: str) -> float:
                return registry.get_sample_value(name, labels) or 0.0

            outcomes = {
                (why, how): value("novavoice_sonic_recoveries_total", reason=why, outcome=how)
                for why in RECOVERY_REASONS
                for how in RECOVERY_OUTCOMES
            }
            drops = {
                q: value("novavoice_queue_drops_total", queue=q)
                for q in ("pre_stream", "audio_in", "audio_out")
            }
            opens = value("novavoice_sonic_stream_opens_total")
            stats = emulator.statistics()
    for name in ("novavoice.supervisor", "novavoice.call"):
        logging.getLogger(name).removeHandler(ends)

    closes = Counter(r.close_code for r in reports)
    recovered = sum(v for (_, how), v in outcomes.items() if how == "recovered")
    failed = sum(v for (_, how), v in outcomes.items() if how == "failed")
    faulted = [line for line in ends.lines if line.get("sonic_recoveries") or any(
        k.startswith("sonic_failures_") for k in line)]  # fmt: skip
    faulted_ok = [line for line in faulted if line.get("close_code") == 1000]
    healthy = [line for line in ends.lines if line not in faulted]
    print(f"calls: {len(reports)} ({args.concurrency} at a time, {args.length:g} s each); "
          f"close codes: {dict(sorted(closes.items(), key=lambda kv: str(kv[0])))}")  # fmt: skip
    print(f"sonic streams opened: {opens:.0f} (emulator accepted {stats.streams_opened}, "
          f"refused {stats.streams_refused})")  # fmt: skip
    by_kind = dict(sorted(stats.faults_by_kind.items()))
    print(f"faults injected by kind (per-kind share {args.fault_share:g} of streams): "
          f"{by_kind} = {sum(by_kind.values())}")  # fmt: skip
    seen = {f"{w}/{h}": int(v) for (w, h), v in outcomes.items() if v}
    print(f"transient failures seen by the daemon (reason/outcome): {seen}")
    share = recovered / (recovered + failed) if recovered + failed else float("nan")
    print(f"recovered: {recovered:.0f}, failed: {failed:.0f}, recovery share: {share:.1%}")
    print(f"faulted calls: {len(faulted)}, of which ended normally (1000): {len(faulted_ok)}")
    for failure, n in ends.failures.most_common():
        print(f"  call failed ×{n}: {failure[:160]}")
    no_reply = sum(r.no_reply_turns for r in reports)
    turns = sum(r.turns for r in reports)
    print(f"caller turns: {turns} ({turns / max(1, len(reports)):.1f} per call; "
          f"{len(healthy)} calls saw no fault), turns with no reply: {no_reply}")  # fmt: skip
    healthy_drops = sum(int(line.get("pre_stream_drops", 0)) for line in healthy)
    print(f"frames dropped: {({k: int(v) for k, v in drops.items()})}; "
          f"pre-stream drops in healthy calls: {healthy_drops}")  # fmt: skip
    print(f"machine: {os.cpu_count()} cores shared with other work; load average "
          f"{os.getloadavg()[0]:.1f} at the end")  # fmt: skip
    return 0 if failed == 0 else 1


def main() -> int:
    """Run the calls and print the figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--fault-share", type=float, default=0.05,
                        help="share of streams faulted with each kind (default 0.05)")  # fmt: skip
    parser.add_argument("--kinds", default="", help="comma list of fault kinds (default all)")
    parser.add_argument("--length", type=float, default=20.0, help="seconds per call")
    parser.add_argument("--stagger", type=float, default=0.2, help="seconds between call starts")
    parser.add_argument("--stall-timeout-ms", type=int, default=None,
                        help="SONIC_STALL_TIMEOUT_MS (default: the daemon's)")  # fmt: skip
    parser.add_argument("--max-connections", type=int, default=8,
                        help="SONIC_MAX_CONNECTIONS (default 8, the daemon's)")  # fmt: skip
    parser.add_argument("--streams-per-connection", type=int, default=100,
                        help="SONIC_STREAMS_PER_CONNECTION (default 100)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with run_local_s3() as s3:
        client = make_s3_client(
            region="us-east-1",
            max_connections=2,
            endpoint_url=s3.endpoint_url,
            static_credentials=("local", "local"),
        )
        seed_example_prompts(client, Settings())
        return trio.run(run, args, s3)


if __name__ == "__main__":
    sys.exit(main())
