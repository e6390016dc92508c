"""The ``novavoice`` dispatcher: only the chosen subcommand is imported.

A devkit subcommand whose extra is missing ends with one line naming the install command.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import subprocess
import sys

import pytest

from sessions import cli

PROBE = """
import json, sys
from sessions.cli import parse_args
try:
    parse_args(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m.startswith(("devkit", "sessions.")))))
"""


def _modules_after(*argv: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, check=True
    )
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_top_level_help_imports_no_subcommand() -> None:
    loaded = _modules_after("--help")
    assert not {"sessions.serve", "devkit.demo", "devkit.loadtest"} & loaded
    assert not any(m.startswith("devkit") for m in loaded)


def test_serve_imports_the_daemon_and_no_devkit() -> None:
    loaded = _modules_after("serve", "--listen", "127.0.0.1:0")
    assert "sessions.serve" in loaded
    assert not any(m.startswith("devkit") for m in loaded), loaded


def test_loadtest_imports_its_module_only() -> None:
    loaded = _modules_after("loadtest", "ws://127.0.0.1:1")
    assert "devkit.loadtest" in loaded
    assert not {"devkit.demo", "devkit.emulator", "sessions.serve"} & loaded


def test_missing_extra_is_one_line_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_requires = importlib.metadata.requires

    def requires(name: str) -> list[str] | None:
        extra = ['no-such-distribution-xyz>=1; extra == "devkit"']
        return (real_requires(name) or []) + extra if name == cli.DISTRIBUTION else None

    monkeypatch.setattr(importlib.metadata, "requires", requires)
    assert cli.main(["demo"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "no-such-distribution-xyz" in err and "pip install 'novavoice[devkit]'" in err
    assert cli.load("serve").__name__ == "sessions.serve"  # the daemon needs no extra
    assert cli.missing_requirements("devkit") == ["no-such-distribution-xyz"]


def test_a_missing_third_party_module_on_import_gives_the_hint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def import_module(name: str) -> object:
        raise ModuleNotFoundError("No module named 'trustme'", name="trustme")

    monkeypatch.setattr(importlib, "import_module", import_module)
    assert cli.main(["emulator"]) == 2
    assert "missing: trustme" in capsys.readouterr().err


def test_a_missing_module_of_our_own_is_a_bug_not_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    def import_module(name: str) -> object:
        raise ModuleNotFoundError("No module named 'devkit.gone'", name="devkit.gone")

    monkeypatch.setattr(importlib, "import_module", import_module)
    with pytest.raises(ModuleNotFoundError):
        cli.main(["emulator"])
