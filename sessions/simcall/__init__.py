"""Simulated carrier calls: the Twilio/Asterisk side of a call, for the demo, e2e tests and
the load harness."""

from sessions.simcall.asterisk_caller import AsteriskCaller
from sessions.simcall.audio import CallerVoice
from sessions.simcall.call import CallerAuth, call_path, run_simulated_call
from sessions.simcall.events import (
    AssistantAudio,
    ClearRequested,
    DaemonEvent,
    DaemonNotice,
    HangupRequested,
    MarkRequested,
)
from sessions.simcall.playback import PlaybackBuffer
from sessions.simcall.report import OUTCOMES, CallReport, percentile
from sessions.simcall.script import CallerTurns, CallScript, Misbehaviour
from sessions.simcall.twilio_caller import TwilioCaller

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
