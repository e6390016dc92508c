"""README command (1): the embedded demo runs whole calls and its own checks pass."""

from __future__ import annotations

import argparse

import pytest

from devkit import demo


def test_demo_places_calls_and_every_check_passes(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    status = demo.main(parser.parse_args(["--burst", "5"]))
    output = capsys.readouterr().out
    assert status == 0, output
    assert "[FAILED]" not in output  # (SONIC_FAILED is a close code the demo shows)
    assert "[ok] the cold burst cost exactly one S3 GET" in output
    assert "[ok] the barge-in cleared playback" in output
    assert "[ok] the Sonic failure played the apology to the end" in output
    # The prompt admin's act: a publish and a rollback, each live for the next call.
    assert "[ok] the publish and the rollback were both confirmed by the daemon" in output
    assert "[ok] the call after the publish used the published version" in output
    assert "[ok] the rollback is a new version, and the next call used it" in output
    # The tools: a signed webhook, a transfer through the (fake) Twilio REST API, a hang-up.
    assert "[ok] the greeting was heard before the caller spoke" in output
    assert "[ok] the keypad entry reached the model as text" in output
    assert "[ok] the webhook was called once, its signature valid" in output
    assert "[ok] the transfer updated the call at Twilio with <Dial>" in output
    assert "[ok] hang_up ended the call after the sentence (4310)" in output
    assert "[ok] every tool use got exactly one result" in output
    # Versions and outcomes are shown; prompt text never is.
    assert "Lindenhof" not in output and "Northwind" not in output
