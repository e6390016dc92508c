"""Drive simulated carrier calls against a NovaVoice URL and measure them.

``novavoice loadtest ws://127.0.0.1:8080 --calls 300 --duration 60 --json-out run.json``
holds up to ``--calls`` simultaneous calls for ``--duration`` seconds: calls start at no
more than ``--ramp`` per second, and each ended call is replaced by a new one until the
duration is over (``--total`` caps how many calls start in all: ``--calls 1000 --total
1000 --ramp 1000`` is a cold burst, ``--calls 1 --total 10000`` a sequential soak). Each
call speaks the Twilio or Asterisk dialect as the carrier does (20 ms frames in real time,
marks, stop), with speech-like caller audio deterministic by ``--seed``; a share of callers
barge in, a share misbehave (split evenly between abrupt disconnect, malformed frames and
silence). Progress goes to stderr once a second; results (per call and aggregate) to
``--json-out``; ``--png`` draws concurrency, first-audio percentiles and errors over time.

The URL is either the daemon's base (``ws://host:port``: the path ``/<dialect>/<assistant>``
is added, ``--dialect`` twilio and ``--assistant`` esther by default) or the full URL a
carrier dials (``ws://host:port/twilio/esther``, possibly behind a path prefix: dialect and
assistant are read from it). A path that is neither, or that contradicts ``--dialect`` or
``--assistant``, is refused before any call starts (see :func:`resolve_target`). When calls
fail, the summary says how: outcomes, close codes with their names, HTTP statuses.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import attrs
import trio

from actors.errors import ConfigError
from devkit.simcall.aggregate import summarize, timeline
from devkit.simcall.call import DIALECTS, CallerAuth, call_path, run_simulated_call
from devkit.simcall.report import CallReport, percentile
from devkit.simcall.script import CallScript, Misbehaviour

MISBEHAVIOURS = (Misbehaviour.ABRUPT_DISCONNECT, Misbehaviour.MALFORMED, Misbehaviour.SILENCE)
DEFAULT_DIALECT = "twilio"
DEFAULT_ASSISTANT = "esther"


@attrs.frozen
class Target:
    """Where the calls go: the URL's scheme and host, the request path, and what it names."""

    base: str
    """``ws://host:port`` (no path): what the Twilio signature's default public URL uses."""
    path: str
    """The request path every call asks for (``/twilio/esther``)."""
    dialect: str
    assistant: str | None


def resolve_target(url: str, dialect: str | None = None, assistant: str | None = None) -> Target:
    """Read ``url`` as the daemon's base URL or as the full URL a carrier dials.

    - no path (``ws://h:8080`` or ``ws://h:8080/``): the path is ``/<dialect>/<assistant>``
      (defaults ``twilio`` and ``esther``; ``assistant=""`` names none);
    - a path whose last segments are ``/<dialect>/<name>`` or whose last is ``/<dialect>``
      (``ws://h:8080/twilio/esther``, ``wss://h/voice/asterisk``): used as given; a
      ``dialect`` or ``assistant`` that contradicts it is refused;
    - any other path is ambiguous (a base behind a prefix, or a mistyped carrier URL?) and
      refused.

    Raises ``ConfigError`` with the accepted forms; the URL must be ``ws://`` or ``wss://``.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ConfigError(f"loadtest URL {url!r}: must be ws://host[:port][/path] or wss://...")
    if parts.query or parts.fragment:
        raise ConfigError(f"loadtest URL {url!r}: no query or fragment, please")
    base = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    path = parts.path.rstrip("/")
    if not path:
        chosen = dialect or DEFAULT_DIALECT
        name = DEFAULT_ASSISTANT if assistant is None else assistant or None
        return Target(base, call_path(chosen, name), chosen, name)
    segments = path.split("/")
    in_path: tuple[str, str | None] | None = None
    if segments[-1] in DIALECTS:
        in_path = (segments[-1], None)
    elif len(segments) >= 3 and segments[-2] in DIALECTS:
        in_path = (segments[-2], unquote(segments[-1]))
    forms = (
        "give the daemon's base URL (ws://host:port) or the full URL a carrier dials "
        "(ws://host:port/twilio/<assistant>, ws://host:port/asterisk/<assistant>)"
    )
    if in_path is None:
        raise ConfigError(f"loadtest URL {url!r}: path {parts.path!r} is ambiguous; {forms}")
    url_dialect, url_assistant = in_path
    if dialect is not None and dialect != url_dialect:
        raise ConfigError(
            f"loadtest URL {url!r} dials {url_dialect} but --dialect is {dialect}; drop one of them"
        )
    if assistant is not None and (assistant or None) != url_assistant:
        named = "no assistant" if url_assistant is None else f"assistant {url_assistant!r}"
        raise ConfigError(
            f"loadtest URL {url!r} names {named} but --assistant is {assistant!r}; drop one of them"
        )
    return Target(base, path, url_dialect, url_assistant)


@attrs.frozen
class CallLength:
    """Call length in seconds: fixed (``low == high``) or uniform on ``[low, high]``."""

    low: float
    high: float

    def draw(self, rng: random.Random) -> float:
        """One call's length."""
        return self.low if self.low == self.high else rng.uniform(self.low, self.high)


def parse_call_length(text: str) -> CallLength:
    """``"30"`` (fixed) or ``"20:40"`` (uniform); raises ``argparse.ArgumentTypeError``."""
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"call length {text!r}: SECONDS or MIN:MAX") from None
    if len(parts) not in (1, 2) or min(parts) <= 0 or parts[0] > parts[-1]:
        raise argparse.ArgumentTypeError(f"call length {text!r}: SECONDS or MIN:MAX, MIN <= MAX")
    return CallLength(parts[0], parts[-1])


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"share {text!r} must be within 0..1")
    return value


@attrs.frozen(kw_only=True)
class LoadPlan:
    """Everything a load run does, fixed before it starts."""

    url: str
    calls: int
    duration: float
    dialect: str = "twilio"
    assistant: str | None = "esther"
    path: str | None = None
    """The request path, whole (``None``: ``/<dialect>/<assistant>`` under ``url``)."""
    ramp: float = 20.0
    """Call starts per second at most (0: no limit)."""
    total: int | None = None
    call_length: CallLength = attrs.field(factory=lambda: CallLength(30.0, 30.0))
    utterance: CallLength | None = None
    """Seconds per caller utterance (``None``: the script's default, 0.8 to 1.6)."""
    barge_in_share: float = 0.0
    misbehave_share: float = 0.0
    seed: int = 0
    auth: CallerAuth = attrs.field(factory=CallerAuth)
    asterisk_format: str = "ulaw"

    def call(self, index: int) -> tuple[CallScript, int]:
        """Script and audio seed of call number ``index`` (deterministic by ``seed``)."""
        rng = random.Random(f"{self.seed}:{index}")
        misbehaviour = Misbehaviour.NONE
        if rng.random() < self.misbehave_share:
            misbehaviour = MISBEHAVIOURS[rng.randrange(len(MISBEHAVIOURS))]
        script = CallScript(
            length=self.call_length.draw(rng),
            barge_in_turn=0 if rng.random() < self.barge_in_share else None,
            misbehaviour=misbehaviour,
            misbehave_after=rng.uniform(1.0, 5.0),
        )
        if self.utterance is not None:
            utterance = (self.utterance.low, self.utterance.high)
            script = attrs.evolve(script, utterance_seconds=utterance)
        return script, rng.getrandbits(31)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"


@attrs.define
class LoadRun:
    """The state of a run in progress (shared by its tasks) and its results."""

    plan: LoadPlan
    origin: float = 0.0
    end: float = 0.0
    started: int = 0
    active: int = 0
    reports: list[CallReport] = attrs.field(factory=list)
    _next_start: float = 0.0

    def _reserve(self, now: float) -> float | None:
        plan = self.plan
        if plan.total is not None and self.started >= plan.total:
            return None
        at = max(now, self._next_start)
        if at >= self.origin + plan.duration:
            return None
        self._next_start = at + (1.0 / plan.ramp if plan.ramp > 0 else 0.0)
        self.started += 1
        return at

    async def _slot(self) -> None:
        plan = self.plan
        while True:
            at = self._reserve(trio.current_time())
            if at is None:
                return
            index = self.started - 1
            await trio.sleep_until(at)
            script, seed = plan.call(index)
            self.active += 1
            try:
                report = await run_simulated_call(
                    plan.url,
                    dialect=plan.dialect,
                    assistant=plan.assistant,
                    path=plan.path,
                    script=script,
                    seed=seed,
                    label=f"call-{index}",
                    auth=plan.auth,
                    asterisk_format=plan.asterisk_format,
                )
            finally:
                self.active -= 1
            self.reports.append(report)

    def progress_line(self, now: float) -> str:
        """One line of live progress."""
        healthy = [r.first_audio_s for r in self.reports if r.misbehaviour == "none"]
        audio = [v for v in healthy if v is not None]
        p50, p99 = percentile(audio, 50), percentile(audio, 99)
        failed = sum(not r.ok for r in self.reports)
        return (
            f"t={now - self.origin:5.0f}s active={self.active} done={len(self.reports)} "
            f"failed={failed} first-audio p50={_seconds(p50)} p99={_seconds(p99)}"
        )

    async def run(self, progress: Callable[[str], None] | None = None) -> None:
        """Run every slot to completion, reporting progress once a second."""
        self.origin = self._next_start = trio.current_time()
        async with trio.open_nursery() as nursery:
            if progress is not None:
                nursery.start_soon(self._progress, progress)
            async with trio.open_nursery() as slots:
                for _ in range(self.plan.calls):
                    slots.start_soon(self._slot)
            nursery.cancel_scope.cancel()
        self.end = trio.current_time()
        if progress is not None:
            progress(self.progress_line(self.end))

    async def _progress(self, progress: Callable[[str], None]) -> None:
        tick = self.origin
        while True:
            tick += 1.0
            await trio.sleep_until(tick)
            progress(self.progress_line(tick))

    def results(self) -> dict[str, Any]:
        """The JSON document: plan, aggregate, per-second timeline, per-call reports."""
        plan = attrs.asdict(self.plan, recurse=True)
        plan["auth"] = {k: v is not None for k, v in attrs.asdict(self.plan.auth).items()}
        calls = []
        for report in sorted(self.reports, key=lambda r: r.started_at):
            row = report.to_json()
            row["started_at"] -= self.origin
            row["ended_at"] -= self.origin
            calls.append(row)
        return {
            "plan": plan,
            "elapsed_s": self.end - self.origin,
            "aggregate": summarize(self.reports),
            "timeline": timeline(self.reports, origin=self.origin, end=self.end),
            "calls": calls,
        }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``novavoice loadtest``."""
    env = os.environ.get
    parser.add_argument(
        "url",
        help="daemon base URL (ws://host:port, wss://host) or the full URL a carrier dials "
        "(ws://host:port/twilio/esther)",
    )
    parser.add_argument("--calls", type=int, required=True, help="simultaneous calls (slots)")
    parser.add_argument("--duration", type=float, required=True, help="seconds to keep calling")
    parser.add_argument("--json-out", type=Path, required=True, help="write results here")
    parser.add_argument("--png", type=Path, help="draw concurrency/latency/errors here")
    parser.add_argument(
        "--dialect", choices=DIALECTS, help="default: from the URL's path, else twilio"
    )
    parser.add_argument("--asterisk-format", choices=("ulaw", "slin16"), default="ulaw")
    parser.add_argument(
        "--assistant",
        help="assistant named in the path (default: from the URL's path, else esther; "
        "'' names none)",
    )
    parser.add_argument("--ramp", type=float, default=20.0, help="call starts/s (0: no limit)")
    parser.add_argument("--total", type=int, help="start at most this many calls in all")
    parser.add_argument(
        "--call-length",
        type=parse_call_length,
        default=CallLength(30.0, 30.0),
        help="seconds per call: SECONDS or MIN:MAX (uniform); default 30",
    )
    parser.add_argument(
        "--utterance",
        type=parse_call_length,
        help="seconds per caller utterance: SECONDS or MIN:MAX; default 0.8:1.6",
    )
    parser.add_argument("--barge-in-share", type=_share, default=0.0, metavar="0..1")
    parser.add_argument(
        "--misbehave-share",
        type=_share,
        default=0.0,
        metavar="0..1",
        help="callers that disconnect abruptly, send a malformed frame, or stay silent",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--twilio-auth-token",
        default=env("TWILIO_AUTH_TOKEN"),
        help="sign upgrades (X-Twilio-Signature); default $TWILIO_AUTH_TOKEN",
    )
    parser.add_argument(
        "--twilio-public-url",
        default=env("TWILIO_PUBLIC_URL"),
        help="the wss:// base the signature covers; default the URL called",
    )
    parser.add_argument(
        "--asterisk-basic-auth",
        default=env("ASTERISK_BASIC_AUTH"),
        metavar="USER:PASSWORD",
        help="default $ASTERISK_BASIC_AUTH",
    )
    parser.add_argument(
        "--asterisk-bearer-token",
        default=env("ASTERISK_BEARER_TOKEN"),
        help="default $ASTERISK_BEARER_TOKEN",
    )


def plan_from_args(args: argparse.Namespace) -> LoadPlan:
    """A :class:`LoadPlan` from parsed options; raises ``ConfigError`` on bad ones."""
    if args.calls < 1 or args.duration <= 0 or (args.total is not None and args.total < 1):
        raise ConfigError("--calls and --total must be >= 1 and --duration > 0")
    target = resolve_target(args.url, args.dialect, args.assistant)
    dialect = target.dialect
    basic = None
    if args.asterisk_basic_auth:
        user, sep, password = args.asterisk_basic_auth.partition(":")
        if not sep:
            raise ConfigError("--asterisk-basic-auth must be USER:PASSWORD")
        basic = (user, password)
    auth = CallerAuth(
        # TWILIO_AUTH_TOKEN may list several tokens (rotation): sign with the first.
        twilio_auth_token=(
            args.twilio_auth_token.split(",")[0].strip()
            if args.twilio_auth_token and dialect == "twilio"
            else None
        ),
        twilio_public_url=args.twilio_public_url,
        basic=basic if dialect == "asterisk" else None,
        bearer_token=args.asterisk_bearer_token if dialect == "asterisk" else None,
    )
    return LoadPlan(
        url=target.base,
        calls=args.calls,
        duration=args.duration,
        dialect=dialect,
        assistant=target.assistant,
        path=target.path,
        ramp=args.ramp,
        total=args.total,
        call_length=args.call_length,
        utterance=args.utterance,
        barge_in_share=args.barge_in_share,
        misbehave_share=args.misbehave_share,
        seed=args.seed,
        auth=auth,
        asterisk_format=args.asterisk_format,
    )


def write_outputs(run: LoadRun, json_out: Path, png: Path | None) -> dict[str, Any]:
    """Write the JSON results (and the PNG if asked); returns the results."""
    results = run.results()
    json_out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    if png is not None:
        from devkit.simcall.plot import write_png  # matplotlib only when a PNG is wanted

        plan = run.plan
        title = f"novavoice loadtest: {plan.calls} x {plan.dialect} calls, {plan.url}"
        write_png(results["timeline"], png, title=title)
    return results


def failure_summary(reports: Sequence[CallReport]) -> list[str]:
    """Why calls failed, most frequent first: one line per (outcome, close code or HTTP
    status, first error) with its count, close codes named from the daemon's table."""
    why: collections.Counter[str] = collections.Counter()
    example: dict[str, str] = {}
    for report in reports:
        if report.ok:
            continue
        if report.close_code is not None:
            detail = f"close {report.close_label}"
            if report.close_reason:
                detail += f" ({report.close_reason})"
        elif report.http_status is not None:
            detail = f"HTTP {report.http_status}"
        else:
            detail = "no close code"
        key = f"{report.outcome}: {detail}"
        why[key] += 1
        if report.error and key not in example:
            example[key] = report.error
    lines = []
    for key, count in why.most_common():
        line = f"{count} x {key}"
        if key in example:
            line += f"; e.g. {example[key][:160]}"
        lines.append(line)
    return lines


def main(args: argparse.Namespace) -> int:
    """Run the load test; 0 unless no call at all succeeded."""
    plan = plan_from_args(args)
    run = LoadRun(plan)

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    trio.run(run.run, progress)
    results = write_outputs(run, args.json_out, args.png)
    agg = results["aggregate"]
    first = agg["first_audio_s"]
    print(
        f"{agg['calls']} calls: {agg['ok']} ok, {agg['failed']} failed; first audio "
        f"p50={first['p50']} p99={first['p99']} s; results in {args.json_out}"
    )
    failures = failure_summary(run.reports)
    if failures:
        where = f"{plan.url}{plan.path or ''}"
        head = "every call failed" if not agg["ok"] else f"{agg['failed']} calls failed"
        print(f"{head} ({where}):")
        for line in failures:
            print(f"  {line}")
    return 0 if agg["ok"] or not agg["calls"] else 1
