"""The embedded demo: whole phone calls through NovaVoice on this machine, no AWS account.

``novavoice demo`` starts, all on 127.0.0.1:

- an S3-compatible server (moto's) with a versioned bucket seeded with the example prompts
  for ``esther`` and ``support-agent``;
- the Nova Sonic emulator (TLS + HTTP/2, signatures verified, simulated turns);
- the daemon, configured exactly as in production but for the endpoint variables;

then places simulated Twilio calls (the load harness's carrier, which speaks Twilio Media
Streams as Twilio does): a cold burst of calls for one assistant, a conversation, a caller
who barges in, a hostile assistant name, a missing assistant, and a call whose Nova Sonic
streams all fail (the emulator's ``error-after`` fault, named in that assistant's prompt):
the daemon opens replacement streams until the call's recovery budget is spent, then the
caller hears the shipped apology clip before the call ends. It prints per call the
assistant, prompt version, time to first audio, turns, barge-ins and how it ended, then the
S3 GET count and the prompt cache statistics. Finally the prompt admin publishes a new
version of ``support-agent`` and rolls it back, refreshing the daemon each time, with a
call after each (:mod:`devkit.demo_publish`). It checks that each behaved as expected.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import trio

from actors.close_codes import CloseCode
from actors.s3_prompt_store import make_s3_client
from actors.sonic.credentials import StaticCredentialsProvider
from actors.sonic.signing import Credentials
from devkit.demo_publish import publish_and_roll_back
from devkit.demo_tools import demo_tool_calls
from devkit.emulator import EmulatorConfig, StreamPlan, open_emulator
from devkit.example_prompts import seed_example_prompts
from devkit.local_s3 import LocalS3, run_local_s3
from devkit.simcall import CallReport, CallScript, percentile, run_simulated_call
from sessions.config import Settings, load_settings
from sessions.logs import CallContextFilter, configure_logging
from sessions.serve import Daemon, DaemonOverrides, open_daemon

Print = Callable[[str], None]

# Local-only credentials: the emulator verifies every signature against them.
DEMO_KEY = "AKIDNOVAVOICEDEMO"
DEMO_SECRET = "novavoice-demo-secret-key"
FRAGILE = "fragile"
"""The demo's assistant whose Nova Sonic stream fails for good."""
FRAGILE_AFTER = 1.0


class CallEndCollector(logging.Handler):
    """Keeps the daemon's ``call_ended`` log records (assistant, prompt version, reason)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Store the fields of a ``call_ended`` record."""
        if getattr(record, "event", None) == "call_ended":
            self.records.append(dict(vars(record)))


@attrs.frozen
class DemoCall:
    """One call of the demo: what the caller saw and what the daemon logged."""

    title: str
    report: CallReport
    daemon: dict[str, Any]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``novavoice demo``."""
    parser.add_argument(
        "--burst", type=int, default=20, help="simultaneous cold calls for esther (default 20)"
    )


def main(args: argparse.Namespace) -> int:
    """Run the demo; exit status 0 when every call behaved as expected."""
    # The daemon's own JSON log goes to a file, as an operator would collect it; the
    # console shows the demo's summary.
    log_path = Path(tempfile.gettempdir()) / "novavoice-demo.log"
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    with log_path.open("w") as log_file:
        configure_logging(logging.INFO, stream=log_file)
        try:
            status = _run(args)
        finally:
            root.handlers[:], root.level = saved  # the file closes: stop logging to it
    print(f"\nthe daemon's JSON log: {log_path}")
    return status


def _run(args: argparse.Namespace) -> int:
    loopback = {"address": ("127.0.0.1", 0), "admin_address": ("127.0.0.1", 0)}
    # The prompt admin refreshes the daemon after each publish with this token.
    # Every simulated call comes from 127.0.0.1: the cold burst must not meet the
    # per-source cap on connections that have not started yet.
    settings = load_settings().replace(
        listen={**loopback, "admin_token": secrets.token_urlsafe(24)},
        admission={"max_unstarted_per_source": 0},
    )
    with run_local_s3() as s3:
        client = make_s3_client(
            region=settings.aws_region,
            max_connections=2,
            endpoint_url=s3.endpoint_url,
            static_credentials=("demo", "demo"),
        )
        seed_example_prompts(client, settings)
        # An assistant whose Sonic streams each fail 1 s in: the emulator reads the fault from
        # the system prompt, so only this call is hit, and every replacement stream too, until
        # the call's recovery budget (SONIC_RECOVERY_MAX_ATTEMPTS) is spent.
        client.put_object(
            Bucket=settings.prompts.bucket,
            Key=f"{settings.prompts.prefix}{FRAGILE}.md",
            Body=f"You are a receptionist.\n[emulator:error-after={FRAGILE_AFTER}]\n".encode(),
        )
        s3.requests.reset()
        return trio.run(run_demo, s3, settings, args.burst, print, client)


async def run_demo(
    s3: LocalS3, settings: Settings, burst: int, out: Print, s3_client: Any = None
) -> int:
    """Start the emulator and the daemon, place the calls, print and check the results."""
    collector = CallEndCollector()
    collector.addFilter(CallContextFilter())  # adds assistant and prompt version
    supervisor_log = logging.getLogger("novavoice.supervisor")
    supervisor_log.addHandler(collector)
    emulator_config = EmulatorConfig(
        credentials={DEMO_KEY: DEMO_SECRET},
        region=settings.aws_region,
        pause_scale=0.4,  # endpointing pauses of 0.7 s instead of 1.75 s: a brisk demo
        plan=StreamPlan(time_to_first_audio=0.3, reply_seconds=1.5, audio_speed=4.0),
    )
    try:
        async with open_emulator(emulator_config) as emulator:
            overrides = DaemonOverrides(
                sonic_endpoint_url=emulator.url,
                sonic_ca_file=emulator.ca_file,
                sonic_credentials=StaticCredentialsProvider(
                    Credentials(access_key_id=DEMO_KEY, secret_access_key=DEMO_SECRET)
                ),
                s3_endpoint_url=s3.endpoint_url,
                s3_static_credentials=("demo", "demo"),
            )
            async with open_daemon(settings, overrides) as daemon:
                out(f"local S3      {s3.endpoint_url} (moto), bucket {settings.prompts.bucket}")
                out(f"Nova Sonic    {emulator.url} (emulator, signatures verified)")
                out(f"NovaVoice     {daemon.url} (admin {daemon.admin_url})")
                calls, burst_reports = await _place_calls(daemon, collector, burst, out)
                stats = daemon.prompt_cache.statistics()
                # Counted before the admin's act, whose reads and writes are its own.
                gets = {
                    name: s3.requests.count(
                        "GET", path_suffix=f"/{settings.prompts.prefix}{name}.md"
                    )
                    for name in ("esther", "support-agent", "nobody")
                }
                publishing: dict[str, bool] = {}
                if s3_client is not None:
                    publishing = await publish_and_roll_back(
                        daemon, settings, s3_client, collector.records, out
                    )
            emulator_stats = emulator.statistics()
            if s3_client is not None:
                publishing |= await demo_tool_calls(
                    settings, overrides, emulator_config, _putter(s3_client, settings), out
                )
    finally:
        supervisor_log.removeHandler(collector)
    _show_calls(out, calls)
    out("\n== S3 and the prompt cache")
    out("  S3 GETs seen by the server: " + ", ".join(f"{k} {v}" for k, v in gets.items()))
    out("  cache: " + ", ".join(f"{k}={v}" for k, v in attrs.asdict(stats).items()))
    out(
        f"  emulator: {emulator_stats.streams_opened} streams, "
        f"{emulator_stats.turns} turns, {emulator_stats.barge_ins} barge-ins, "
        f"{emulator_stats.signature_failures} signature failures"
    )
    return _verdict(
        out, calls, burst_reports, burst, gets, emulator_stats.signature_failures, publishing
    )


async def _place_calls(
    daemon: Daemon, collector: CallEndCollector, burst: int, out: Print
) -> tuple[list[DemoCall], list[CallReport]]:
    conversation = CallScript(length=None, max_turns=2, utterance_seconds=(0.8, 1.2))
    one_turn = CallScript(length=None, max_turns=1, utterance_seconds=(0.8, 1.0))
    persistent = CallScript(length=None, max_turns=40, utterance_seconds=(0.8, 1.0))
    barge = CallScript(length=None, max_turns=2, utterance_seconds=(0.8, 1.0), barge_in_turn=0)

    out(f"\n== a cold burst: {burst} simultaneous calls for esther")
    burst_reports: list[CallReport] = []
    async with trio.open_nursery() as nursery:

        async def place(seed: int) -> None:
            report = await run_simulated_call(
                daemon.url, assistant="esther", script=one_turn, seed=seed
            )
            burst_reports.append(report)

        for seed in range(burst):
            nursery.start_soon(place, 1000 + seed)
    await daemon.supervisor.wait_active_calls(lambda n: n == 0)
    firsts = [r.first_audio_s for r in burst_reports if r.first_audio_s is not None]
    p50, p99 = percentile(firsts, 50), percentile(firsts, 99)
    completed = sum(r.outcome == "completed" for r in burst_reports)
    out(f"  {completed}/{burst} completed; first audio p50 {_s(p50)}, p99 {_s(p99)}")
    collector.records.clear()

    plan = [
        ("conversation with support-agent", "support-agent", None, conversation),
        ("caller barges in on esther", "esther", None, barge),
        ("hostile assistant name", None, "/twilio/..%2F..%2Fetc%2Fpasswd", one_turn),
        ("assistant with no prompt", "nobody", None, one_turn),
        # The caller keeps talking: each stream fails 1 s in, the daemon recovers until its
        # budget is spent, then plays the apology.
        ("Nova Sonic fails for good mid-call", FRAGILE, None, persistent),
    ]
    calls: list[DemoCall] = []
    for i, (title, assistant, path, script) in enumerate(plan):
        out(f"\n== {title}")
        report = await run_simulated_call(
            daemon.url, assistant=assistant, path=path, script=script, seed=i
        )
        await daemon.supervisor.wait_active_calls(lambda n: n == 0)
        record = collector.records[-1] if collector.records else {}
        collector.records.clear()
        calls.append(DemoCall(title, report, record))
        out(f"  {_ending(report)}")
    return calls, burst_reports


def _putter(s3_client: Any, settings: Settings) -> Callable[[str, str], None]:
    """Publish one more assistant (blocking boto3: call it from a worker thread)."""

    def put(name: str, text: str) -> None:
        key = f"{settings.prompts.prefix}{name}.md"
        s3_client.put_object(Bucket=settings.prompts.bucket, Key=key, Body=text.encode())

    return put


def _refused_404(report: CallReport) -> bool:
    return report.outcome == "rejected" and report.http_status == 404


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _ending(report: CallReport) -> str:
    if report.outcome == "rejected":
        return f"rejected before the upgrade: HTTP {report.http_status} '{report.error}'"
    by = report.closed_by or "?"
    reason = f" '{report.close_reason}'" if report.close_reason else ""
    return f"{report.outcome}: closed by {by}, code {report.close_label}{reason}"


def _show_calls(out: Print, calls: list[DemoCall]) -> None:
    out("\n== calls")
    header = f"  {'call':<34} {'assistant':<14} {'prompt version':<36} {'1st audio':>9}"
    out(header + f" {'turns':>5} {'barge-ins':>9}  ended")
    for call in calls:
        r, d = call.report, call.daemon
        version = str(d.get("prompt_version") or "-")[:36]
        assistant = str(d.get("assistant") or r.assistant or "-")[:14]
        ended = f"{d.get('reason', '-')} ({r.close_label})"
        if d.get("sonic_recovery_attempts"):
            ended += f", {d['sonic_recovery_attempts']} stream recoveries tried"
        if d.get("fallback"):
            ended += f", fallback clip {d['fallback']}"
        out(
            f"  {call.title[:34]:<34} {assistant:<14} {version:<36} {_s(r.first_audio_s):>9}"
            f" {r.turns:>5} {r.barge_ins:>9}  {ended}"
        )


def _verdict(
    out: Print,
    calls: list[DemoCall],
    burst: list[CallReport],
    burst_size: int,
    gets: dict[str, int],
    signature_failures: int,
    publishing: dict[str, bool],
) -> int:
    by_title = {c.title: c for c in calls}
    conversation = by_title["conversation with support-agent"].report
    barge = by_title["caller barges in on esther"].report
    checks = {
        f"all {burst_size} burst calls completed": sum(r.outcome == "completed" for r in burst)
        == burst_size,
        "the cold burst cost exactly one S3 GET": gets["esther"] == 1,
        "the conversation had two answered turns": conversation.outcome == "completed"
        and conversation.responses == 2,
        "the barge-in cleared playback": barge.clears_received >= 1 and barge.barge_ins == 1,
        "the hostile name was refused before answering (404), before S3": _refused_404(
            by_title["hostile assistant name"].report
        ),
        # Refused before answering when S3 said "no such key" within ADMISSION_PROMPT_CHECK_MS,
        # else accepted and ended with 4104: either way only this call.
        "the missing prompt refused only its call": _refused_404(
            by_title["assistant with no prompt"].report
        )
        or by_title["assistant with no prompt"].report.close_code == CloseCode.PROMPT_NOT_FOUND,
        "every event signature verified": signature_failures == 0,
        # No dead air: the apology clip was played to its end (the carrier's mark came
        # back), then the call ended with the failure's own code.
        "the Sonic failure played the apology to the end once recovery was spent, then ended "
        "the call (4200)": (
            by_title["Nova Sonic fails for good mid-call"].daemon.get("fallback") == "heard"
            and (
                by_title["Nova Sonic fails for good mid-call"].daemon.get("sonic_recovery_attempts")
                or 0
            )
            > 0
            and by_title["Nova Sonic fails for good mid-call"].report.close_code
            == CloseCode.SONIC_FAILED
        ),
        **publishing,
    }
    out("\n== checks")
    for label, ok in checks.items():
        out(f"  [{'ok' if ok else 'FAILED'}] {label}")
    return 0 if all(checks.values()) else 1
