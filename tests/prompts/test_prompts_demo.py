"""The prompt-path demo runs end to end against moto's server and its own checks pass."""

from __future__ import annotations

import argparse

import pytest

from devkit import prompts_demo as demo


def test_demo_runs_and_its_checks_pass(aws_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    status = demo.main(parser.parse_args(["--burst", "100"]))
    output = capsys.readouterr().out
    assert status == 0, output
    assert "FAILED" not in output
    assert "[ok] cold burst for esther cost exactly one S3 GET" in output
    # A publish (validated, conditional) and a rollback reach the cache as new versions.
    assert "[ok] published version picked up" in output
    assert "[ok] rollback picked up as a third version" in output
    assert "voice amy" in output and "by demo: back to v1 (rollback of" in output
    # No prompt text is printed, only versions and ETags.
    assert "Lindenhof" not in output
