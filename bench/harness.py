"""Shared helpers of the headline benchmarks: the stack as separate processes, and the OS view.

:func:`open_stack` starts, each as its own process configured by the environment only:

- the local S3 (moto's server, seeded with the example prompts and any extra assistants;
  ``python bench/harness.py s3-server``, which also answers GET counts taken on the server's
  side from its request log),
- the Nova Sonic emulator (``novavoice emulator``),
- the daemon (``novavoice serve``), pointed at both by ``AWS_ENDPOINT_URL_*``/``AWS_CA_BUNDLE``,

waits for their listening lines and tears them down (SIGTERM, then SIGKILL). The daemon's CPU
time and RSS are read from ``/proc/<pid>/stat`` and ``/proc/<pid>/status``, its counters by
scraping ``/metrics``; :func:`run_loadtest` runs ``novavoice loadtest`` as a process of its own
so none of the load generator's CPU is counted as the daemon's. Logs go to ``bench/out/``.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any

import attrs
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
PYTHON = sys.executable
ACCESS_KEY = "AKIDNOVAVOICEBENCH"
SECRET_KEY = "novavoice-bench-secret-key"
CLK_TCK = os.sysconf("SC_CLK_TCK")
MACHINE_NOTE = (
    f"machine: {os.cpu_count()} cores shared by the daemon, the emulator, the local S3 and "
    "the load generator (all on 127.0.0.1); the daemon's figures are its own process's "
    "(/proc), but the others compete with it for the same cores"
)

Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]


# --- processes --------------------------------------------------------------------------------


def _base_env() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "PYTHONPATH": str(ROOT),
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    }


def _wait_json_line(
    path: Path, proc: subprocess.Popen[Any], event: str, timeout: float
) -> dict[str, Any]:
    """The first JSON line of ``path`` whose ``event`` is ``event`` (polling the file)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for raw in path.read_text(errors="replace").splitlines():
            if raw.startswith("{"):
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue
                if line.get("event") == event:
                    return dict(line)
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited ({proc.returncode}); see {path}")
        time.sleep(0.05)
    raise TimeoutError(f"no {event!r} line in {path} within {timeout} s")


def _stop(proc: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def _process(
    command: Sequence[str], env: Mapping[str, str], log: Path
) -> Iterator[subprocess.Popen[str]]:
    with log.open("w") as sink:
        proc = subprocess.Popen(
            list(command),
            env=dict(env),
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        try:
            yield proc
        finally:
            _stop(proc)


class S3Server:
    """The local S3 process: its endpoint and server-side request counts."""

    def __init__(self, proc: subprocess.Popen[str], endpoint_url: str) -> None:
        self.proc = proc
        self.endpoint_url = endpoint_url

    def count(self, method: str, path_suffix: str) -> int:
        """Requests ``method`` whose path ends with ``path_suffix``, counted by the server."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps([method, path_suffix]) + "\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())


@contextmanager
def _s3_server(prompts: Mapping[str, str], log: Path) -> Iterator[S3Server]:
    env = {**_base_env(), "BENCH_EXTRA_PROMPTS": json.dumps(dict(prompts))}
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [PYTHON, str(ROOT / "bench" / "harness.py"), "s3-server"],
            env=env,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=sink,
            text=True,
        )
        try:
            assert proc.stdout is not None
            ready = json.loads(proc.stdout.readline() or "{}")
            if "endpoint_url" not in ready:
                raise RuntimeError(f"local S3 did not start; see {log}")
            yield S3Server(proc, ready["endpoint_url"])
        finally:
            if proc.stdin is not None:
                proc.stdin.close()  # EOF: the server stops
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _serve_s3() -> int:
    """``s3-server`` mode: run moto's S3, seed it, print the endpoint, answer count queries."""
    from actors.s3_prompt_store import make_s3_client
    from devkit.example_prompts import seed_example_prompts
    from devkit.local_s3 import run_local_s3
    from sessions.config import settings_from_mapping

    settings = settings_from_mapping({})
    extra: dict[str, str] = json.loads(os.environ.get("BENCH_EXTRA_PROMPTS", "{}"))
    with run_local_s3() as s3:
        client = make_s3_client(
            region=settings.aws_region,
            max_connections=2,
            endpoint_url=s3.endpoint_url,
            static_credentials=(ACCESS_KEY, SECRET_KEY),
        )
        seed_example_prompts(client, settings)
        for name, text in extra.items():
            key = f"{settings.prompts.prefix}{name}.md"
            client.put_object(Bucket=settings.prompts.bucket, Key=key, Body=text.encode())
        s3.requests.reset()
        print(json.dumps({"endpoint_url": s3.endpoint_url}), flush=True)
        for line in sys.stdin:
            method, suffix = json.loads(line)
            print(s3.requests.count(method, path_suffix=suffix), flush=True)
    return 0


@attrs.frozen
class Stack:
    """The running stack: where the daemon listens, its pid, and the local S3."""

    url: str
    admin_url: str
    daemon_pid: int
    emulator_pid: int
    emulator_url: str
    s3: S3Server
    out: Path
    daemon_log: Path

    def prompt_gets(self, assistant: str) -> int:
        """S3 GETs of ``assistant``'s prompt object, counted on the S3 server's side."""
        return self.s3.count("GET", f"/assistants/{assistant}.md")


@contextmanager
def open_stack(
    name: str,
    *,
    emulator_args: Sequence[str] = (),
    daemon_env: Mapping[str, str] | None = None,
    prompts: Mapping[str, str] | None = None,
) -> Iterator[Stack]:
    """Start local S3, emulator and daemon as separate processes; logs in ``bench/out/``."""
    OUT.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        s3 = stack.enter_context(_s3_server(prompts or {}, OUT / f"{name}.s3.log"))
        emu_log = OUT / f"{name}.emulator.log"
        emu = stack.enter_context(
            _process(
                [
                    PYTHON,
                    "-m",
                    "sessions.cli",
                    "emulator",
                    "--listen",
                    "127.0.0.1:0",
                    *emulator_args,
                ],
                _base_env(),
                emu_log,
            )
        )
        emulator = _wait_json_line(emu_log, emu, "listening", 30)
        env = {
            **_base_env(),
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": emulator["url"],
            "AWS_CA_BUNDLE": emulator["ca_file"],
            "AWS_ENDPOINT_URL_S3": s3.endpoint_url,
            "NOVAVOICE_LISTEN": "127.0.0.1:0",
            "NOVAVOICE_ADMIN_LISTEN": "127.0.0.1:0",
            "MAX_CALLS": "5000",
            # Every simulated caller comes from 127.0.0.1: no per-source cap on bursts.
            "MAX_UNSTARTED_PER_SOURCE": "0",
            **(daemon_env or {}),
        }
        daemon_log = OUT / f"{name}.daemon.log"
        daemon = stack.enter_context(
            _process([PYTHON, "-m", "sessions.cli", "serve"], env, daemon_log)
        )
        listening = _wait_json_line(daemon_log, daemon, "listening", 30)
        yield Stack(
            url=listening["url"],
            admin_url=listening["admin_url"],
            daemon_pid=daemon.pid,
            emulator_pid=emu.pid,
            emulator_url=emulator["url"],
            s3=s3,
            out=OUT,
            daemon_log=daemon_log,
        )


@attrs.frozen
class Backends:
    """Local S3 and the emulator, shared by daemons started one after another."""

    s3: S3Server
    emulator_url: str
    emulator_ca_file: str
    emulator_pid: int


@contextmanager
def open_backends(name: str, *, emulator_args: Sequence[str] = ()) -> Iterator[Backends]:
    """Start local S3 and the emulator as processes of their own (logs in ``bench/out/``)."""
    OUT.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        s3 = stack.enter_context(_s3_server({}, OUT / f"{name}.s3.log"))
        emu_log = OUT / f"{name}.emulator.log"
        command = [PYTHON, "-m", "sessions.cli", "emulator", "--listen", "127.0.0.1:0"]
        emu = stack.enter_context(_process([*command, *emulator_args], _base_env(), emu_log))
        emulator = _wait_json_line(emu_log, emu, "listening", 30)
        yield Backends(s3, emulator["url"], emulator["ca_file"], emu.pid)


@attrs.frozen
class Daemon:
    """A running daemon: where it listens and its pid."""

    url: str
    admin_url: str
    pid: int
    log: Path


@contextmanager
def open_daemon(
    name: str,
    backends: Backends,
    *,
    env: Mapping[str, str] | None = None,
    root: Path = ROOT,
) -> Iterator[Daemon]:
    """Start ``novavoice serve`` from the source tree ``root`` (default: this checkout; an
    older tree gives a before/after comparison in one run) against ``backends``."""
    full_env = {
        **_base_env(),
        "PYTHONPATH": str(root),
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": backends.emulator_url,
        "AWS_CA_BUNDLE": backends.emulator_ca_file,
        "AWS_ENDPOINT_URL_S3": backends.s3.endpoint_url,
        "NOVAVOICE_LISTEN": "127.0.0.1:0",
        "NOVAVOICE_ADMIN_LISTEN": "127.0.0.1:0",
        "MAX_CALLS": "5000",
        **(env or {}),
    }
    log = OUT / f"{name}.daemon.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [PYTHON, "-m", "sessions.cli", "serve"],
            env=full_env,
            cwd=root,  # ``-m`` puts the working directory first on sys.path
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
    try:
        listening = _wait_json_line(log, proc, "listening", 60)
        yield Daemon(listening["url"], listening["admin_url"], proc.pid, log)
    finally:
        _stop(proc)


def run_loadtest(
    url: str, json_out: Path, *args: str, log: Path | None = None
) -> subprocess.Popen[str]:
    """Start ``novavoice loadtest URL --json-out FILE ARGS...`` as its own process."""
    sink: IO[str] = (log or json_out.with_suffix(".log")).open("w")
    command = [PYTHON, "-m", "sessions.cli", "loadtest", url, "--json-out", str(json_out), *args]
    proc = subprocess.Popen(command, cwd=ROOT, env=_base_env(), stdout=sink, stderr=sink, text=True)
    sink.close()  # the child holds its own descriptor
    return proc


def twilio_call_sid(seed: int) -> str:
    """The ``callSid`` a simulated Twilio call with this seed sends (the daemon logs it as
    ``call_id``); mirrors ``devkit.simcall.call``: a stream sid, then the call sid."""
    rng = random.Random(seed)
    rng.getrandbits(128)
    return f"CA{rng.getrandbits(128):032x}"


def call_ends(log: Path) -> dict[str, dict[str, Any]]:
    """The daemon's ``call_ended`` log lines, by call id."""
    out: dict[str, dict[str, Any]] = {}
    for raw in log.read_text(errors="replace").splitlines():
        if '"call_ended"' in raw:
            line = json.loads(raw)
            out[line.get("call_id") or ""] = line
    return out


def load_results(path: Path) -> dict[str, Any]:
    """The JSON document a load test wrote."""
    data: dict[str, Any] = json.loads(path.read_text())
    return data


# --- the OS view of a process ------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (``/proc/<pid>/stat`` fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (``VmRSS`` in ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (``/proc/stat``), to see who else runs."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


# --- /metrics ----------------------------------------------------------------------------------


def scrape(admin_url: str) -> Samples:
    """Every sample of the daemon's ``/metrics``, keyed by (name, sorted labels)."""
    with urllib.request.urlopen(admin_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = float(s.value)
    return out


def metric(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))


def histogram_delta(
    before: Samples, after: Samples, name: str, **labels: str
) -> list[tuple[float, float]]:
    """Cumulative ``(upper bound, count)`` buckets of ``name`` observed between two scrapes."""
    bounds: set[float] = set()
    for n, lab in after:
        if n == name + "_bucket":
            bounds.add(float(dict(lab)["le"]))
    rows = []
    for le in sorted(bounds):
        key = "+Inf" if math.isinf(le) else str(le)
        b = metric(after, name + "_bucket", le=key, **labels)
        a = metric(before, name + "_bucket", le=key, **labels)
        rows.append((le, b - a))
    return rows


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus's ``histogram_quantile``: linear within the bucket holding rank ``q``.

    Returns ``None`` with no observations; the upper bound of the last finite bucket if the
    rank falls in ``+Inf``.
    """
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return lower
            if count == below:
                return le
            return lower + (le - lower) * (rank - below) / (count - below)
        lower, below = le, count
    return lower


def latency_summary(before: Samples, after: Samples) -> dict[str, dict[str, float | None]]:
    """p50/p99 (ms) and count of the daemon's added latency, per direction, between scrapes."""
    out: dict[str, dict[str, float | None]] = {}
    for direction in ("in", "out"):
        buckets = histogram_delta(
            before, after, "novavoice_added_latency_seconds", direction=direction
        )
        p50 = histogram_quantile(0.50, buckets)
        p99 = histogram_quantile(0.99, buckets)
        out[direction] = {
            "count": buckets[-1][1] if buckets else 0.0,
            "p50_ms": None if p50 is None else p50 * 1000,
            "p99_ms": None if p99 is None else p99 * 1000,
        }
    return out


def fmt_ms(value: float | None) -> str:
    """A millisecond figure, or ``-``."""
    return "-" if value is None else f"{value:.3f} ms"


def write_json(name: str, data: Mapping[str, Any]) -> Path:
    """Write ``bench/out/<name>.json`` and return its path."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    return path


if __name__ == "__main__":
    if sys.argv[1:] == ["s3-server"]:
        sys.exit(_serve_s3())
    sys.exit("usage: harness.py s3-server  (the benchmarks import this module)")
