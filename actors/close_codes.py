"""Every WebSocket close code the daemon sends a carrier: the one table for operators.

Carriers and operators alert on these numbers, so a value never changes once published.
Reasons sent with a code are short (RFC 6455 caps them at 123 bytes), safe to log, and never
hold prompt text, audio or secrets. Each error in :mod:`actors.errors` carries the code its
call ends with (``close_code``); the call maps anything else to ``INTERNAL_ERROR``.

====  ==========================  =======================================================  =========
code  name                        meaning                                                  sent by
====  ==========================  =======================================================  =========
1000  NORMAL                      normal end: carrier stopped the stream, or we hung up    call
1001  GOING_AWAY                  the daemon is shutting down (drain deadline passed)      call
1009  MESSAGE_TOO_BIG             a WebSocket message above 256 KiB                        websocket
1011  INTERNAL_ERROR              a bug ended this call (and only this call)               call
4000  CARRIER_PROTOCOL_ERROR      generic carrier protocol violation                       dialect
4001  CARRIER_MALFORMED_MESSAGE   not UTF-8 / not JSON / missing or mistyped field         dialect
4002  CARRIER_BAD_PAYLOAD         media payload not valid base64, or a bad length          dialect
4003  CARRIER_UNEXPECTED_MESSAGE  valid message in the wrong state (media first)           dialect
4004  CARRIER_WRONG_FRAME_TYPE    BINARY frame where only TEXT is allowed, or reverse      dialect
4005  CARRIER_MESSAGE_TOO_BIG     message exceeds the dialect's documented size cap        dialect
4006  CARRIER_UNSUPPORTED_MEDIA   media format we cannot bridge (not μ-law/A-law/slin)     dialect
4007  CARRIER_STREAM_MISMATCH     message names another stream than the one started        dialect
4008  CARRIER_BUFFER_OVERFLOW     too much early audio before the stream started           dialect
4009  CARRIER_AUDIO_FLOOD         caller audio far beyond real time: CALLER_AUDIO_ABUSE_*  call
4010  CARRIER_LOCAL_ERROR         we misused the dialect (our bug, not the carrier's)      dialect
4100  NO_ASSISTANT                no assistant named, or the name breaks the naming rule   call
4104  PROMPT_NOT_FOUND            the assistant's prompt does not exist                    prompts
4108  PROMPT_TIMEOUT              prompt not loaded within PROMPT_LOAD_TIMEOUT_MS          prompts
4110  PROMPT_STORE_FAILED         prompt store failed (bucket, access, throttling, body)   prompts
4200  SONIC_FAILED                the Nova Sonic stream failed                             sonic
4201  SONIC_THROTTLED             Nova Sonic throttles us (HTTP 429 or throttling frame)   sonic
4208  SONIC_TIMEOUT               Nova Sonic did not answer in time (connect, TLS, reply)  sonic
4209  SONIC_SESSION_ENDED         the Nova Sonic session ended (model timeout, closed)     sonic
4300  START_TIMEOUT               carrier never started the stream within the deadline     call
4301  MAX_DURATION                the call reached MAX_CALL_DURATION_MS                    call
4302  IDLE_TIMEOUT                no speech, no assistant audio: CALL_IDLE_TIMEOUT_MS      call
4310  ASSISTANT_HANG_UP           the assistant hung up (hang_up tool) after its sentence  tools
4311  TRANSFERRED                 the call was handed to a human (transfer tool)           tools
4401  CARRIER_UNAUTHORIZED        credentials missing on the upgrade (HTTP 401 first)      admission
4403  CARRIER_FORBIDDEN           credentials or signature wrong (HTTP 403 first)          admission
====  ==========================  =======================================================  =========

Who sends it: *call* — the call, as it ends; *prompts* — the call, when its prompt fails
to load; *sonic* — the call, when its Nova Sonic session fails; *dialect* — the call, when
the carrier breaks its protocol (the dialect raises the error); *tools* — the call, when
the assistant's ``hang_up`` or ``transfer`` tool ends it (:mod:`actors.tool_executors`);
*admission* — the
supervisor, refusing an upgrade; *websocket* — trio-websocket itself, enforcing the
supervisor's message cap.

A prompt or Sonic failure once the caller is on the line (after the carrier's start) first
plays the fallback clip (:mod:`sessions.fallback`), then closes with the failure's own code
above: the code says why, the call-end log line's ``fallback`` field what the caller heard.
A call the fallback transferred ends with 4311 (TRANSFERRED), like the transfer tool's.

4401 and 4403 name authentication failures in logs and errors; on the wire the upgrade is
refused with HTTP 401/403 before any WebSocket exists. One 4403 is sent on a socket: a
signed Twilio call whose ``start`` names another assistant (``customParameters``) than the
signed URL (the dialect raises it).
"""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    """A WebSocket close code the daemon sends; see the module docstring for the table."""

    NORMAL = 1000
    GOING_AWAY = 1001
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    CARRIER_PROTOCOL_ERROR = 4000
    CARRIER_MALFORMED_MESSAGE = 4001
    CARRIER_BAD_PAYLOAD = 4002
    CARRIER_UNEXPECTED_MESSAGE = 4003
    CARRIER_WRONG_FRAME_TYPE = 4004
    CARRIER_MESSAGE_TOO_BIG = 4005
    CARRIER_UNSUPPORTED_MEDIA = 4006
    CARRIER_STREAM_MISMATCH = 4007
    CARRIER_BUFFER_OVERFLOW = 4008
    CARRIER_AUDIO_FLOOD = 4009
    CARRIER_LOCAL_ERROR = 4010
    NO_ASSISTANT = 4100
    PROMPT_NOT_FOUND = 4104
    PROMPT_TIMEOUT = 4108
    PROMPT_STORE_FAILED = 4110
    SONIC_FAILED = 4200
    SONIC_THROTTLED = 4201
    SONIC_TIMEOUT = 4208
    SONIC_SESSION_ENDED = 4209
    START_TIMEOUT = 4300
    MAX_DURATION = 4301
    IDLE_TIMEOUT = 4302
    ASSISTANT_HANG_UP = 4310
    TRANSFERRED = 4311
    CARRIER_UNAUTHORIZED = 4401
    CARRIER_FORBIDDEN = 4403
