"""Simulated carrier calls: the Twilio/Asterisk side of a call, for the demo, e2e tests and
the load harness."""

from devkit.simcall.asterisk_caller import AsteriskCaller
from devkit.simcall.audio import CallerVoice
from devkit.simcall.call import CallerAuth, call_path, run_simulated_call
from devkit.simcall.events import (
    AssistantAudio,
    ClearRequested,
    DaemonEvent,
    DaemonNotice,
    HangupRequested,
    MarkRequested,
)
from devkit.simcall.playback import PlaybackBuffer
from devkit.simcall.report import OUTCOMES, CallReport, percentile
from devkit.simcall.script import CallerTurns, CallScript, Misbehaviour
from devkit.simcall.twilio_caller import TwilioCaller

__all__ = [
    "OUTCOMES",
    "AssistantAudio",
    "AsteriskCaller",
    "CallReport",
    "CallScript",
    "CallerAuth",
    "CallerTurns",
    "CallerVoice",
    "ClearRequested",
    "DaemonEvent",
    "DaemonNotice",
    "HangupRequested",
    "MarkRequested",
    "Misbehaviour",
    "PlaybackBuffer",
    "TwilioCaller",
    "call_path",
    "percentile",
    "run_simulated_call",
]
