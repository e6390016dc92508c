"""Sans-IO carrier dialects: Twilio Media Streams and Asterisk ``chan_websocket``."""

from sessions.dialects.asterisk import (
    AsteriskDialect,
    ControlFormat,
    MarksMode,
    check_upgrade_auth,
)
from sessions.dialects.base import (
    AudioReceived,
    CallStarted,
    CallStopped,
    CarrierNotice,
    ClearAudio,
    Command,
    Dialect,
    DtmfReceived,
    Event,
    FlowPaused,
    FlowResumed,
    MarkPlayed,
    SendAudio,
    SendMark,
    StreamState,
)
from sessions.dialects.twilio import TwilioDialect
from sessions.dialects.twilio_signature import compute_signature, validate_twilio_upgrade

__all__ = [
    "AsteriskDialect",
    "AudioReceived",
    "CallStarted",
    "CallStopped",
    "CarrierNotice",
    "ClearAudio",
    "Command",
    "ControlFormat",
    "Dialect",
    "DtmfReceived",
    "Event",
    "FlowPaused",
    "FlowResumed",
    "MarkPlayed",
    "MarksMode",
    "SendAudio",
    "SendMark",
    "StreamState",
    "TwilioDialect",
    "check_upgrade_auth",
    "compute_signature",
    "validate_twilio_upgrade",
]
