"""A production install: ``pip install .`` with no extras gives a working daemon, no dev kit.

A fresh virtual environment in a temporary directory gets the distribution without extras
(with ``requirements/daemon.txt`` as constraints, so it is also the check that the daemon's
lock satisfies pyproject.toml). Then, run from outside the source tree so nothing is imported
from the checkout: ``novavoice serve --help`` works, importing the daemon loads none of the
development kit's dependencies, and a devkit subcommand prints how to install the extra.

The install is ``uv pip install`` (uv is in the dev extra): the same metadata and resolution
as ``pip install .``, in about 15 s where pip takes 50-100 s on a shared 2-core machine.
Needs the package index (CI has it) on a cold cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEVKIT_ONLY = ("moto", "matplotlib", "trustme", "flask", "werkzeug")
# httpx is a daemon dependency since the tools (actors/tool_http.py) use it.
ADMIN_ONLY = ("starlette", "hypercorn", "jinja2", "multipart")
INSTALL_HINT = "pip install 'novavoice[devkit]'"


def _run(command: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def production_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding ``novavoice`` alone; returns its ``bin`` directory."""
    base = tmp_path_factory.mktemp("production")
    # Build from a copy of the distribution's files, so the build leaves nothing in the
    # checkout and the checkout's modules cannot leak into the install.
    source = base / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for package in ("actors", "sessions", "devkit", "promptadmin"):
        shutil.copytree(
            ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    uv = [sys.executable, "-m", "uv"]
    created = _run([*uv, "venv", "--quiet", "--python", sys.executable, "venv"], cwd=base)
    assert created.returncode == 0, created.stderr
    install = _run(
        [*uv, "pip", "install", "--quiet", "--python", str(base / "venv" / "bin" / "python"),
         "-c", str(ROOT / "requirements" / "daemon.txt"), str(source)],
        cwd=base,
        timeout=600,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    return base / "venv" / "bin"


def test_no_devkit_or_admin_dependency_is_installed(production_venv: Path) -> None:
    packages = (*DEVKIT_ONLY, *ADMIN_ONLY)
    probe = "import importlib.util, json; print(json.dumps({n: importlib.util.find_spec(n) is not None for n in %r}))"  # noqa: E501
    result = _run([str(production_venv / "python"), "-c", probe % (packages,)], cwd=Path("/"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == dict.fromkeys(packages, False)


def test_the_admin_subcommand_says_how_to_install_its_extra(production_venv: Path) -> None:
    result = _run([str(production_venv / "novavoice"), "admin"], cwd=Path("/"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr  # one line, no traceback
    assert "pip install 'novavoice[admin]'" in result.stderr


def test_serve_help_works(production_venv: Path) -> None:
    result = _run([str(production_venv / "novavoice"), "serve", "--help"], cwd=Path("/"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: novavoice serve")
    assert "--listen" in result.stdout


def test_top_level_help_lists_every_subcommand(production_venv: Path) -> None:
    result = _run([str(production_venv / "novavoice"), "--help"], cwd=Path("/"))
    assert result.returncode == 0, result.stderr
    for name in ("serve", "demo", "prompts-demo", "emulator", "loadtest"):
        assert name in result.stdout


def test_importing_the_daemon_loads_no_devkit_module(production_venv: Path) -> None:
    probe = "import json, sys, sessions.serve, sessions.cli; print(json.dumps(sorted(sys.modules)))"
    result = _run([str(production_venv / "python"), "-c", probe], cwd=Path("/"))
    assert result.returncode == 0, result.stderr
    loaded = {name.split(".")[0] for name in json.loads(result.stdout)}
    assert "sessions" in loaded and "trio" in loaded  # the probe really imported the daemon
    assert loaded.isdisjoint({*DEVKIT_ONLY, "devkit"}), loaded & {*DEVKIT_ONLY, "devkit"}


@pytest.mark.parametrize("command", ["demo", "prompts-demo", "emulator", "loadtest"])
def test_devkit_subcommand_says_how_to_install_the_extra(
    production_venv: Path, command: str
) -> None:
    result = _run([str(production_venv / "novavoice"), command], cwd=Path("/"))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr  # one line, no traceback
    assert INSTALL_HINT in result.stderr
    assert f"novavoice {command}" in result.stderr


def test_the_checkout_is_not_what_the_venv_imports(production_venv: Path) -> None:
    probe = "import sessions; print(sessions.__file__)"
    result = _run([str(production_venv / "python"), "-c", probe], cwd=Path("/"))
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(production_venv.parent)


def test_the_fallback_clip_ships_as_package_data(production_venv: Path) -> None:
    probe = (
        "from actors.fallback_audio import shipped_fallback_clips; "
        "print(sorted(shipped_fallback_clips().clips))"
    )
    result = _run([str(production_venv / "python"), "-c", probe], cwd=Path("/"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[('apology', 8000), ('apology', 16000)]"
