"""Idle RSS of ``novavoice serve``: the daemon listening, no call, nothing to talk to.

Reproduce (about 15 s):

    .venv/bin/python bench/idle_rss.py
    .venv/bin/python bench/idle_rss.py --python /other/checkout/.venv/bin/python  # compare

The daemon runs as an operator would start it, configured only by the environment: dummy
credentials, a bucket name, both listeners on 127.0.0.1 port 0, and the Bedrock and S3
endpoints on 127.0.0.1's discard port (an idle daemon must not need either). Once it logs
``"event": "listening"`` and ``--settle`` seconds pass, its RSS (with the anonymous and
file-backed parts) is read from ``/proc/<pid>/status``; then it gets SIGTERM. It is started
from a scratch directory with ``python -m sessions.cli serve``, so ``--python`` picks the
checkout (whatever that interpreter has installed). With ``--breakdown``, a separate
``python -c "import sessions.serve"`` under tracemalloc and ``-X importtime`` says which
top-level packages the import loads and what they allocate. Issue 13's goal: <= 60 MB.
Results: ``bench/out/idle_rss.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "out"
GOAL_MB = 60.0
MB = 1024 * 1024

ENV = {
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "AKIDIDLEBENCH",
    "AWS_SECRET_ACCESS_KEY": "idle-bench-secret",
    "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": "https://127.0.0.1:9",
    "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9",
    "PROMPTS_S3_BUCKET": "idle-bench",
    "NOVAVOICE_LISTEN": "127.0.0.1:0",
    "NOVAVOICE_ADMIN_LISTEN": "127.0.0.1:0",
}

BREAKDOWN = """
import json, sys, tracemalloc
tracemalloc.start()
import sessions.serve
snapshot = tracemalloc.take_snapshot()
sizes = {}
for stat in snapshot.statistics("filename"):
    path = stat.traceback[0].filename
    key = "(module code objects)" if path.startswith("<frozen") else "other"
    for entry in sorted(sys.path, key=len, reverse=True):
        if entry and path.startswith(entry + "/"):
            key = path[len(entry) + 1 :].split("/")[0].removesuffix(".py")
            break
    sizes[key] = sizes.get(key, 0) + stat.size
packages = sorted({name.split(".")[0] for name in sys.modules})
print(json.dumps({"allocated": sizes, "modules": len(sys.modules), "packages": packages}))
"""


def _environment() -> dict[str, str]:
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    return {**base, **ENV}


def _status_kb(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def measure(python: str, settle: float, workdir: Path) -> dict[str, Any]:
    """Start the daemon, wait for ``listening`` plus ``settle`` seconds, read its RSS."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [python, "-m", "sessions.cli", "serve"],
        cwd=workdir,
        env=_environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for raw in proc.stderr:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if line.get("event") == "listening":
                break
        else:
            raise SystemExit(f"novavoice serve exited ({proc.wait()}) before listening")
        to_listening = time.monotonic() - started
        time.sleep(settle)
        if proc.poll() is not None:
            raise SystemExit(f"novavoice serve exited ({proc.returncode}) while idle")
        status = _status_kb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return {
        "rss_mb": status["VmRSS"] / 1024,
        "rss_anon_mb": status.get("RssAnon", 0) / 1024,
        "rss_file_mb": status.get("RssFile", 0) / 1024,
        "peak_rss_mb": status.get("VmHWM", 0) / 1024,
        "seconds_to_listening": round(to_listening, 2),
    }


def breakdown(python: str, workdir: Path, top: int) -> dict[str, Any]:
    """Which top-level packages ``import sessions.serve`` loads, allocates and takes time in."""

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [python, *argv], cwd=workdir, env=_environment(), capture_output=True, text=True,
            check=True,
        )  # fmt: skip

    report = json.loads(run("-c", BREAKDOWN).stdout.splitlines()[-1])
    # Timed separately: tracemalloc slows imports several times over.
    timed = run("-X", "importtime", "-c", "import sessions.serve")
    self_us: dict[str, int] = defaultdict(int)
    for line in timed.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        if parts[0].isdigit():
            self_us[parts[2].split(".")[0]] += int(parts[0])
    by_size = sorted(report["allocated"].items(), key=lambda kv: -kv[1])[:top]
    by_time = sorted(self_us.items(), key=lambda kv: -kv[1])[:top]
    return {
        "modules_loaded": report["modules"],
        "packages": report["packages"],
        "python_allocations_mb": {k: round(v / MB, 2) for k, v in by_size},
        "import_seconds": {k: round(v / 1e6, 3) for k, v in by_time},
        "import_seconds_total": round(sum(self_us.values()) / 1e6, 3),
    }


def main() -> int:
    """Measure and print the daemon's idle RSS (the median of ``--runs``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="interpreter with novavoice")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds idle after listening")
    parser.add_argument("--runs", type=int, default=3, help="daemon starts (median reported)")
    parser.add_argument("--breakdown", action="store_true", help="import time and allocations")
    parser.add_argument("--top", type=int, default=12, help="packages listed in the breakdown")
    parser.add_argument("--label", default="idle_rss", help="name of the JSON in bench/out/")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="novavoice-idle-") as scratch:
        runs = [measure(args.python, args.settle, Path(scratch)) for _ in range(args.runs)]
        median = sorted(runs, key=lambda r: r["rss_mb"])[len(runs) // 2]
        doc: dict[str, Any] = {"python": args.python, "settle_s": args.settle, "runs": runs}
        doc["median"] = median
        each = ", ".join(f"{r['rss_mb']:.1f}" for r in runs)
        print(
            f"novavoice serve idle RSS: {median['rss_mb']:.1f} MB "
            f"(anonymous {median['rss_anon_mb']:.1f} MB, files {median['rss_file_mb']:.1f} MB; "
            f"runs {each}); goal <= {GOAL_MB:.0f} MB"
        )
        if args.breakdown:
            doc["breakdown"] = detail = breakdown(args.python, Path(scratch), args.top)
            print(
                f"import sessions.serve: {detail['modules_loaded']} modules, "
                f"{detail['import_seconds_total']:.2f} s of imports"
            )
            print("  Python allocations by package (MB):", detail["python_allocations_mb"])
            print("  import time by package (s):", detail["import_seconds"])
            print("  packages:", " ".join(detail["packages"]))
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{args.label}.json"
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
