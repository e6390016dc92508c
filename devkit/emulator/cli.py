"""Run the local Nova Sonic emulator (TLS + HTTP/2 on loopback, no AWS needed).

Once listening it prints exactly one JSON line on stdout:
  {"event": "listening", "url": "https://127.0.0.1:PORT", "ca_file": "/tmp/...pem"}
Point a client at it with AWS_ENDPOINT_URL_BEDROCK_RUNTIME=<url> and AWS_CA_BUNDLE=<ca_file>.
It verifies SigV4 and the event signature chain against the credentials from the
environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) or the flags.
It runs until SIGINT or SIGTERM.

Per-stream faults can also be requested from the system prompt, so one faulty call runs
beside healthy ones: put [emulator:rst-after=2,stall-after=5] (any --*-after, --session-limit,
--idle-timeout, --time-to-first-audio, --reply-seconds, --audio-speed key) in the SYSTEM text.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
from functools import partial

import trio

from actors.errors import ConfigError
from devkit.emulator.config import DEFAULT_MODEL_IDS, EmulatorConfig, StreamPlan
from devkit.emulator.server import serve_emulator

__all__ = ["add_arguments", "build_config", "main"]

_PLAN_FLAGS = {
    "session_limit": "end each stream with modelTimeoutException after this many seconds "
    "(Bedrock: 480)",
    "idle_timeout": "end a stream with validationException after this many seconds without "
    "input events; 0 disables",
    "time_to_first_audio": "seconds between the end of the caller's turn and the first "
    "assistant audio",
    "reply_seconds": "length in seconds of each synthetic assistant reply",
    "audio_speed": "assistant audio is generated this many times faster than real time",
    "throttle_after": "send a throttlingException frame and end each stream after N seconds",
    "error_after": "send a modelStreamErrorException frame and end each stream after N seconds",
    "internal_error_after": "send an internalServerException frame and end each stream after "
    "N seconds",
    "rst_after": "reset each stream (RST_STREAM INTERNAL_ERROR) after N seconds",
    "stall_after": "stop sending on each stream after N seconds, keeping it open",
    "corrupt_after": "send a frame with a bad CRC on each stream after N seconds, then end it",
    "goaway_after": "send GOAWAY and drop the connection N seconds after each stream opened",
    "tool_use_turn": "start the reply to the caller's Nth turn with a toolUse (if tools offered)",
    "tool_use_after": "send a toolUse N seconds after each stream opened (if tools offered)",
}


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _stream_fault(value: str) -> tuple[int, dict[str, float]]:
    ordinal, sep, spec = value.partition(":")
    if not sep or not ordinal.isdigit():
        raise argparse.ArgumentTypeError(f"expected ORDINAL:key=value[,key=value], got {value!r}")
    overrides: dict[str, float] = {}
    for item in spec.split(","):
        key, eq, raw = item.partition("=")
        try:
            overrides[key.strip().replace("-", "_")] = float(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad stream fault item {item!r}") from None
        if not eq:
            raise argparse.ArgumentTypeError(f"bad stream fault item {item!r}")
    return int(ordinal), overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the emulator's flags; every knob is documented in ``--help``."""
    defaults = StreamPlan()
    parser.add_argument(
        "--listen",
        type=_host_port,
        default=("127.0.0.1", 0),
        metavar="HOST:PORT",
        help="address to listen on; port 0 picks a free port (default 127.0.0.1:0)",
    )
    parser.add_argument(
        "--access-key-id",
        default=os.environ.get("AWS_ACCESS_KEY_ID"),
        help="access key id requests must be signed with (env AWS_ACCESS_KEY_ID)",
    )
    parser.add_argument(
        "--secret-access-key",
        default=os.environ.get("AWS_SECRET_ACCESS_KEY"),
        help="its secret (env AWS_SECRET_ACCESS_KEY)",
    )
    parser.add_argument(
        "--session-token",
        default=os.environ.get("AWS_SESSION_TOKEN"),
        help="session token requests must carry, if any (env AWS_SESSION_TOKEN)",
    )
    parser.add_argument(
        "--region",
        default=os.environ.get("AWS_REGION", "us-east-1"),
        help="SigV4 region requests must be signed for (env AWS_REGION)",
    )
    parser.add_argument(
        "--model-id",
        action="append",
        default=[],
        metavar="ID",
        help="serve this model id too (default: "
        + ", ".join(sorted(DEFAULT_MODEL_IDS))
        + "); repeatable",
    )
    parser.add_argument(
        "--max-clock-skew",
        type=float,
        default=300.0,
        metavar="S",
        help="allowed distance of x-amz-date and event :date from now (default 300)",
    )
    parser.add_argument(
        "--signature-error-type",
        default="InvalidSignatureException",
        help="x-amzn-errortype of the 403 for a bad request signature",
    )
    for name, text in _PLAN_FLAGS.items():
        default = getattr(defaults, name)
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=float,
            default=default,
            metavar="S",
            help=f"{text} (default {default})",
        )
    parser.add_argument(
        "--pause-scale",
        type=float,
        default=1.0,
        metavar="F",
        help="scale the endpointing pauses HIGH 1.5 s / MEDIUM 1.75 s / LOW 2 s",
    )
    parser.add_argument(
        "--speech-threshold-dbfs",
        type=float,
        default=-40.0,
        metavar="DB",
        help="per-10 ms RMS level counted as caller speech (default -40 dBFS)",
    )
    parser.add_argument(
        "--min-speech",
        type=float,
        default=0.1,
        metavar="S",
        help="speech needed to start an utterance or barge in (default 0.1 s)",
    )
    parser.add_argument(
        "--output-chunk",
        type=float,
        default=0.1,
        metavar="S",
        help="audio per audioOutput event (default 0.1 s)",
    )
    parser.add_argument(
        "--throttle-open-every",
        type=int,
        default=0,
        metavar="N",
        help="refuse every Nth stream with HTTP 429 ThrottlingException",
    )
    parser.add_argument(
        "--fault-fraction",
        type=float,
        default=0.0,
        metavar="F",
        help="give this fraction of streams one mid-stream fault (seeded; the kinds "
        "--rst-after .. --stall-after take turns, each 1-4 s after the open)",
    )
    parser.add_argument(
        "--throttle-open-fraction",
        type=float,
        default=0.0,
        metavar="F",
        help="refuse this fraction of streams with 429 (seeded)",
    )
    parser.add_argument(
        "--throttle-open-ordinals",
        default="",
        metavar="N,N",
        help="refuse these stream ordinals (1 = first stream) with 429",
    )
    parser.add_argument(
        "--max-active-streams",
        type=int,
        default=0,
        metavar="N",
        help="refuse streams beyond N open at once with 429 (0 = unlimited)",
    )
    parser.add_argument(
        "--max-concurrent-streams",
        type=int,
        default=1000,
        metavar="N",
        help="SETTINGS_MAX_CONCURRENT_STREAMS per connection (default 1000)",
    )
    parser.add_argument(
        "--receive-window",
        type=int,
        default=1 << 20,
        metavar="BYTES",
        help="flow-control window granted to each stream (default 1 MiB; HTTP/2's own "
        "default of 64 KiB makes a busy connection the bottleneck)",
    )
    parser.add_argument(
        "--goaway-after-streams",
        type=int,
        default=0,
        metavar="N",
        help="graceful GOAWAY after N streams on a connection (0 = never)",
    )
    parser.add_argument(
        "--goaway-after-seconds",
        type=float,
        default=None,
        metavar="S",
        help="graceful GOAWAY once a connection is S seconds old",
    )
    parser.add_argument(
        "--stream-fault",
        type=_stream_fault,
        action="append",
        default=[],
        metavar="ORDINAL:KEY=V[,KEY=V]",
        help="per-stream overrides, e.g. 3:rst-after=2 (repeatable)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of transcripts, voices and "
                        "random throttling (default 0)")  # fmt: skip
    parser.add_argument(
        "--tool-use-name",
        default=None,
        help="the tool the emulator calls (default: the first one promptStart offers)",
    )
    parser.add_argument(
        "--tool-use-text-pattern",
        default=None,
        metavar="REGEX",
        help="answer a cross-modal text matching REGEX with a toolUse instead of speech",
    )


def build_config(args: argparse.Namespace) -> EmulatorConfig:
    """Turn parsed flags into an :class:`EmulatorConfig`; raises ConfigError when unusable."""
    if not args.access_key_id or not args.secret_access_key:
        raise ConfigError(
            "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or pass "
            "--access-key-id and --secret-access-key"
        )
    plan_values = {name: getattr(args, name) for name in _PLAN_FLAGS}
    if plan_values["idle_timeout"] == 0:
        plan_values["idle_timeout"] = None
    try:
        plan = StreamPlan(**plan_values)
        ordinals = frozenset(int(x) for x in args.throttle_open_ordinals.split(",") if x.strip())
        overrides = dict(args.stream_fault)
        for values in overrides.values():
            plan.with_overrides(values)
        if args.tool_use_text_pattern is not None:
            re.compile(args.tool_use_text_pattern)
    except (ValueError, re.error) as exc:
        raise ConfigError(str(exc)) from None
    tokens = {args.access_key_id: args.session_token} if args.session_token else {}
    return EmulatorConfig(
        credentials={args.access_key_id: args.secret_access_key},
        session_tokens=tokens,
        region=args.region,
        model_ids=DEFAULT_MODEL_IDS | frozenset(args.model_id),
        max_clock_skew=args.max_clock_skew,
        signature_error_type=args.signature_error_type,
        plan=plan,
        stream_overrides=overrides,
        pause_scale=args.pause_scale,
        speech_threshold_dbfs=args.speech_threshold_dbfs,
        min_speech_seconds=args.min_speech,
        output_chunk_seconds=args.output_chunk,
        throttle_open_every=args.throttle_open_every,
        throttle_open_ordinals=ordinals,
        throttle_open_fraction=args.throttle_open_fraction,
        max_active_streams=args.max_active_streams,
        max_concurrent_streams=args.max_concurrent_streams,
        receive_window=args.receive_window,
        goaway_after_streams=args.goaway_after_streams,
        goaway_after_seconds=args.goaway_after_seconds,
        fault_fraction=args.fault_fraction,
        seed=args.seed,
        tool_use_name=args.tool_use_name,
        tool_use_text_pattern=args.tool_use_text_pattern,
    )


async def _run(config: EmulatorConfig, host: str, port: int) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            emulator = await nursery.start(partial(serve_emulator, config, host=host, port=port))
            line = {"event": "listening", "url": emulator.url, "ca_file": emulator.ca_file}
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()


def main(args: argparse.Namespace) -> int:
    """Run the emulator until SIGINT/SIGTERM; returns the exit status."""
    config = build_config(args)
    host, port = args.listen
    trio.run(_run, config, host, port)
    return 0
