"""How a call ends, as the carrier sees it: WebSocket close codes and reasons.

Carrier protocol violations carry their own codes (``actors.errors.CarrierError``:
4000–4010, 4401/4403). The codes here are for calls that end for any other reason; the
reason text is short, safe to log, and never contains prompt text or audio.

====  ==============================================================
code  meaning
====  ==============================================================
1000  normal end (the carrier stopped the stream, or we hung up)
1001  going away: the daemon is shutting down (drain deadline)
1011  internal error: a bug ended this call (and only this call)
4100  no assistant named, or the name breaks the naming rule
4104  the assistant's prompt does not exist
4108  the prompt could not be loaded in time
4110  the prompt store failed (bucket, access, throttling, bad content)
4200  the Nova Sonic stream failed
4201  Nova Sonic is throttling us (HTTP 429 or a throttling frame)
4208  Nova Sonic did not answer in time (connect, TLS, first response)
4209  the Nova Sonic session ended (model timeout, stream closed)
4300  the carrier never started the stream within the start deadline
====  ==============================================================
"""

from __future__ import annotations

import attrs

from actors.errors import (
    CarrierError,
    InvalidAssistantName,
    PromptError,
    PromptNotFound,
    PromptTimeout,
    SonicError,
    SonicHTTPError,
    SonicStreamError,
    SonicTimeout,
)
from sessions.metrics import EndReason

NORMAL = 1000
GOING_AWAY = 1001
INTERNAL_ERROR = 1011
NO_ASSISTANT = 4100
PROMPT_NOT_FOUND = 4104
PROMPT_TIMEOUT = 4108
PROMPT_STORE_FAILED = 4110
SONIC_FAILED = 4200
SONIC_THROTTLED = 4201
SONIC_TIMEOUT = 4208
SONIC_SESSION_ENDED = 4209
START_TIMEOUT = 4300


@attrs.frozen
class CallEnd:
    """Why a call ended: the metrics reason, and the close code and reason for the carrier."""

    reason: EndReason
    code: int
    text: str


def end_for_error(exc: Exception) -> CallEnd:
    """The :class:`CallEnd` for a domain error that ended a call."""
    if isinstance(exc, CarrierError):
        return CallEnd("protocol_error", exc.close_code, exc.reason)
    if isinstance(exc, PromptError):
        if isinstance(exc, InvalidAssistantName):
            code = NO_ASSISTANT
        elif isinstance(exc, PromptNotFound):
            code = PROMPT_NOT_FOUND
        elif isinstance(exc, PromptTimeout):
            code = PROMPT_TIMEOUT
        else:
            code = PROMPT_STORE_FAILED
        # The carrier learns which assistant failed and how, never bucket or key names.
        what = {
            NO_ASSISTANT: "invalid assistant name",
            PROMPT_NOT_FOUND: "no prompt for assistant",
            PROMPT_TIMEOUT: "prompt load timed out for assistant",
            PROMPT_STORE_FAILED: "prompt store failed for assistant",
        }[code]
        # InvalidAssistantName already carries the name escaped and quoted.
        name = exc.assistant if code == NO_ASSISTANT else repr(exc.assistant)
        return CallEnd("prompt_error", code, _short(f"{what} {name}"))
    if isinstance(exc, SonicError):
        if isinstance(exc, SonicTimeout):
            code = SONIC_TIMEOUT
        elif (isinstance(exc, SonicHTTPError) and exc.status == 429) or (
            isinstance(exc, SonicStreamError) and exc.exception_type == "throttlingException"
        ):
            code = SONIC_THROTTLED
        elif isinstance(exc, SonicStreamError) and exc.exception_type == "modelTimeoutException":
            code = SONIC_SESSION_ENDED
        else:
            code = SONIC_FAILED
        return CallEnd("sonic_error", code, _short(f"Nova Sonic: {type(exc).__name__}"))
    return CallEnd("internal_error", INTERNAL_ERROR, "internal error")


def _short(text: str) -> str:
    # RFC 6455 caps a close reason at 123 bytes of UTF-8.
    return text.encode()[:123].decode(errors="ignore")
