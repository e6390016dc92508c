"""The ``Dockerfile``: its required properties, hadolint, its health check run for real, and
the lock file it installs from. (Building the image takes minutes and podman:
``deploy/container/build-check.sh``, outside the suite.)"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.shared import ROOT, require_tool

DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "requirements" / "daemon.txt"

Instruction = tuple[str, str]


def instructions(text: str) -> list[Instruction]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            out.append((keyword.upper(), " ".join(rest.split())))
    return out


def stages(text: str) -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for ins in instructions(text):
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def last(stage: list[Instruction], keyword: str) -> str:
    values = [args for kw, args in stage if kw == keyword]
    assert values, f"no {keyword} in the final stage"
    return values[-1]


def test_base_image_is_a_build_arg_defaulting_to_slim_python_311() -> None:
    head = instructions(DOCKERFILE.read_text())
    assert head[0] == ("ARG", "BASE_IMAGE=python:3.11-slim")
    froms = [args for kw, args in head if kw == "FROM"]
    assert len(froms) >= 2  # multi-stage
    assert all(f.startswith("${BASE_IMAGE} AS ") for f in froms)


def test_final_stage_runs_the_daemon_unprivileged_under_tini() -> None:
    final = stages(DOCKERFILE.read_text())[-1]
    user = last(final, "USER").split(":")[0]
    assert user not in ("root", "0") and user.isdigit()
    assert json.loads(last(final, "ENTRYPOINT"))[:3] == ["/usr/bin/tini", "--", "novavoice"]
    assert json.loads(last(final, "CMD")) == ["serve"]
    assert last(final, "STOPSIGNAL") == "SIGTERM"
    assert set(last(final, "EXPOSE").split()) == {"8080/tcp", "9090/tcp"}
    healthcheck = last(final, "HEALTHCHECK")
    assert "/healthz" in healthcheck and "--interval=" in healthcheck
    env = last(final, "ENV")
    assert "NOVAVOICE_LISTEN=0.0.0.0:8080" in env
    assert "NOVAVOICE_ADMIN_LISTEN=0.0.0.0:9090" in env
    # Only the build stage's venv is copied in; no source tree, no tests.
    copies = [args for kw, args in final if kw == "COPY"]
    assert copies == ["--from=build /opt/novavoice /opt/novavoice"]


def test_only_the_daemon_is_installed_from_the_lock_file() -> None:
    build = stages(DOCKERFILE.read_text())[0]
    runs = " ".join(args for kw, args in build if kw == "RUN")
    assert "pip install --no-deps -r requirements/daemon.txt" in runs
    assert "pip install --no-deps ." in runs
    assert "[dev" not in runs and "devkit" not in runs
    sources = {args.split()[0] for kw, args in build if kw == "COPY"}
    assert sources <= {"requirements/daemon.txt", "pyproject.toml", "actors/", "sessions/"}


def test_dockerignore_allows_only_what_the_build_copies() -> None:
    patterns = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert patterns[0] == "*"
    allowed = {p[1:] for p in patterns if p.startswith("!")}
    assert allowed == {
        "Dockerfile", "pyproject.toml", "README.md", "requirements/daemon.txt",
        "actors/", "sessions/",
    }  # fmt: skip


def test_lock_file_pins_every_base_dependency_and_no_dev_tool() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"unpinned line in the lock file: {line}"
            pins[canonicalize_name(name.split("[")[0])] = version
    for dep in project["dependencies"]:
        req = Requirement(dep)
        name = canonicalize_name(req.name)
        assert name in pins, f"{name} missing from requirements/daemon.txt"
        assert req.specifier.contains(pins[name]), (name, pins[name], str(req.specifier))
    # The test and lint tools never reach the image (anything the daemon's own dependencies
    # drag in, transitively, does: that is what the lock is for).
    for tool in ("pytest", "pytest-trio", "hypothesis", "ruff", "mypy", "kubernetes-validate"):
        assert tool not in pins, f"dev tool {tool} in the daemon lock"


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("hadolint")
    binary = str(exe) if exe.exists() else require_tool("hadolint")
    return subprocess.run(
        [binary, "--no-color", str(path)], capture_output=True, text=True, timeout=60
    )


def test_hadolint_passes() -> None:
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_regression(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    text = DOCKERFILE.read_text()
    broken.write_text(text.replace("apt-get install -y ", "apt-get install "))
    assert broken.read_text() != text
    result = hadolint(broken)
    assert result.returncode != 0 and "DL3014" in result.stdout


# --- the HEALTHCHECK command, run against a real HTTP server --------------------------------


@pytest.fixture
def admin_server() -> Iterator[tuple[int, list[int]]]:
    status = [200]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code = status[0] if self.path == "/healthz" else 404
            self.send_response(code)
            self.end_headers()
            self.wfile.write(b"ok\n")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], status
    finally:
        server.shutdown()
        server.server_close()


def healthcheck_command() -> list[str]:
    final = stages(DOCKERFILE.read_text())[-1]
    command: list[str] = json.loads(last(final, "HEALTHCHECK").split(" CMD ", 1)[1])
    return command


def test_healthcheck_command_probes_healthz_on_the_admin_port(
    admin_server: tuple[int, list[int]],
) -> None:
    port, status = admin_server
    command = healthcheck_command()
    assert command[0] == "python3"
    run = [sys.executable, *command[1:]]
    env = {"NOVAVOICE_ADMIN_LISTEN": f"127.0.0.1:{port}"}
    assert subprocess.run(run, env=env, capture_output=True, timeout=30).returncode == 0
    status[0] = 500
    assert subprocess.run(run, env=env, capture_output=True, timeout=30).returncode != 0
    # Nothing listening there: unhealthy.
    env = {"NOVAVOICE_ADMIN_LISTEN": "127.0.0.1:1"}
    assert subprocess.run(run, env=env, capture_output=True, timeout=30).returncode != 0
