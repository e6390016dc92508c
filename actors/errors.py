"""The one error hierarchy of NovaVoice.

Every error the project raises on purpose derives from :class:`NovaVoiceError`, so a call
boundary can tell "this call failed for a reason we understand" from a bug. Messages name
the assistant, key, stream or variable involved, never prompt text, transcripts or audio.
"""

from __future__ import annotations

from actors.close_codes import CloseCode


class NovaVoiceError(Exception):
    """Root of every error NovaVoice raises deliberately."""


class ConfigError(NovaVoiceError):
    """A configuration value is missing or invalid; the message names the variable."""


# --- prompt path -------------------------------------------------------------------------


class PromptError(NovaVoiceError):
    """Loading an assistant's system prompt failed.

    ``assistant`` and ``key`` identify what was asked for; ``retryable`` tells a caller
    whether asking again later may succeed.
    """

    retryable: bool = False
    close_code: CloseCode = CloseCode.PROMPT_STORE_FAILED
    """The code a call ends with when this error stops it."""

    def __init__(self, message: str, *, assistant: str, key: str | None = None) -> None:
        super().__init__(message)
        self.assistant = assistant
        self.key = key


class InvalidAssistantName(PromptError):
    """The assistant name breaks the naming rule; nothing was sent to S3."""

    close_code = CloseCode.NO_ASSISTANT


class PromptNotFound(PromptError):
    """No object exists at the assistant's key."""

    close_code = CloseCode.PROMPT_NOT_FOUND


class PromptBucketNotFound(PromptError):
    """The configured prompts bucket does not exist."""


class PromptAccessDenied(PromptError):
    """S3 refused access to the prompt (IAM policy, bucket policy or KMS)."""


class PromptThrottled(PromptError):
    """S3 asked us to slow down (``SlowDown`` / 503)."""

    retryable = True


class PromptTimeout(PromptError):
    """The prompt could not be loaded within its deadline."""

    retryable = True
    close_code = CloseCode.PROMPT_TIMEOUT


class PromptInvalid(PromptError):
    """The object exists but is not a usable prompt (empty, not UTF-8, or too large)."""


class PromptStoreError(PromptError):
    """Any other failure talking to S3; ``__cause__`` carries the botocore error."""

    retryable = True


# --- prompt admin (the separate process that publishes prompts) -------------------------


class PromptConflict(PromptError):
    """A conditional write lost: the assistant changed since the writer read it.

    ``expected`` is the ETag the writer started from (``None``: it expected no object);
    nothing was written, and the other writer's version is intact.
    """

    def __init__(
        self, message: str, *, assistant: str, key: str | None = None, expected: str | None
    ) -> None:
        super().__init__(message, assistant=assistant, key=key)
        self.expected = expected


class PromptRejected(PromptError):
    """A write was refused before reaching S3: the definition failed validation, or the
    author or change message is unusable. ``report`` is the
    :class:`~actors.assistant_definition.ValidationReport` when validation failed."""

    def __init__(
        self, message: str, *, assistant: str, key: str | None = None, report: object = None
    ) -> None:
        super().__init__(message, assistant=assistant, key=key)
        self.report = report


class PromptVersionNotFound(PromptError):
    """The assistant exists but has no version with the requested id."""


class VersioningDisabled(NovaVoiceError):
    """The prompts bucket is not versioned, so history and rollback are impossible."""

    def __init__(self, message: str, *, bucket: str, status: str | None) -> None:
        super().__init__(message)
        self.bucket = bucket
        self.status = status


# --- Nova Sonic bidirectional streams ----------------------------------------------------


class SonicError(NovaVoiceError):
    """A Nova Sonic stream failed. ``retryable`` says whether a new stream may succeed."""

    retryable: bool = False
    close_code: CloseCode = CloseCode.SONIC_FAILED
    """The code a call ends with when this error stops it."""


class EventStreamError(SonicError):
    """Bytes that are not a valid ``application/vnd.amazon.eventstream`` message."""


class SigningError(SonicError):
    """A request or event could not be signed, or a signature did not verify."""


class SonicProtocolError(SonicError):
    """The HTTP/2 or Nova Sonic event protocol was broken."""


class LocalProtocolError(SonicProtocolError):
    """We misused the protocol (for example sent an event after the stream was closed)."""


class RemoteProtocolError(SonicProtocolError):
    """The peer misbehaved (bad frame, unexpected event, broken HTTP/2)."""


class SonicHTTPError(SonicError):
    """Bedrock refused the stream before it started (a non-200 response).

    ``status`` is the HTTP status, ``error_type`` the ``x-amzn-errortype`` name before the
    colon (for example ``ThrottlingException``), ``message`` the server's explanation.
    """

    _RETRYABLE = frozenset(
        {
            "ThrottlingException",
            "ModelNotReadyException",
            "ServiceUnavailableException",
            "InternalServerException",
            "ModelTimeoutException",
        }
    )

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(f"HTTP {status} {error_type}: {message}")
        self.status = status
        self.error_type = error_type
        self.message = message
        self.retryable = error_type in self._RETRYABLE or status >= 500
        if status == 429:
            self.close_code = CloseCode.SONIC_THROTTLED


class SonicStreamError(SonicError):
    """Bedrock sent an exception frame inside a running stream.

    ``exception_type`` is the lowerCamel union member (``throttlingException``,
    ``modelTimeoutException``, ``validationException``, ...) or, for unmodeled
    ``:message-type error`` frames, the ``:error-code``.
    """

    _RETRYABLE = frozenset(
        {
            "throttlingException",
            "serviceUnavailableException",
            "internalServerException",
            "modelStreamErrorException",
            "modelTimeoutException",
        }
    )

    def __init__(
        self,
        exception_type: str,
        message: str,
        *,
        original_status_code: int | None = None,
        original_message: str | None = None,
    ) -> None:
        super().__init__(f"{exception_type}: {message}")
        self.exception_type = exception_type
        self.message = message
        self.original_status_code = original_status_code
        self.original_message = original_message
        self.retryable = exception_type in self._RETRYABLE
        if exception_type == "throttlingException":
            self.close_code = CloseCode.SONIC_THROTTLED
        elif exception_type == "modelTimeoutException":
            self.close_code = CloseCode.SONIC_SESSION_ENDED


class SonicConnectionError(SonicError):
    """The connection carrying a stream failed (connect, TLS, GOAWAY, RST_STREAM, EOF)."""

    retryable = True


class SonicTimeout(SonicError):
    """A Sonic operation did not finish within its deadline (connect, TLS, first response)."""

    retryable = True
    close_code = CloseCode.SONIC_TIMEOUT


class SonicStreamReset(SonicConnectionError):
    """The server reset a running stream (RST_STREAM other than REFUSED_STREAM)."""


class SonicStalled(SonicError):
    """A running stream went silent: caller speech and then no Sonic output for
    ``SONIC_STALL_TIMEOUT_MS`` (the call's stall watchdog raised it)."""

    retryable = True
    close_code = CloseCode.SONIC_TIMEOUT


class SonicUnrecoverable(SonicError):
    """A call's Sonic stream failed transiently once more after its recovery budget
    (``SONIC_RECOVERY_MAX_ATTEMPTS``) was spent, or a recovery attempt failed for good.

    ``reason`` is the last failure's reason label (:mod:`actors.sonic.recovery`),
    ``attempts`` the recovery attempts made; ``__cause__`` is the last failure, whose close
    code the call still ends with (throttling stays 4201, a stall 4208, ...).
    """

    def __init__(self, last: SonicError, *, reason: str, attempts: int) -> None:
        super().__init__(
            f"Nova Sonic did not recover after {attempts} attempt(s); last failure "
            f"({reason}): {type(last).__name__}: {last}"
        )
        self.reason = reason
        self.attempts = attempts
        self.last = last
        self.close_code = last.close_code


# --- event-stream decoding (subclasses of EventStreamError) ------------------------------


class ChecksumMismatch(EventStreamError):
    """A CRC32 in an event-stream message did not match.

    ``part`` is ``"prelude"`` or ``"message"``; the message text starts with
    ``Prelude checksum mismatch`` or ``Message checksum mismatch`` (the wording of AWS's
    public event-stream test suite).
    """

    def __init__(self, part: str, expected: int, computed: int) -> None:
        super().__init__(
            f"{part.capitalize()} checksum mismatch: "
            f"expected 0x{expected:08x}, computed 0x{computed:08x}"
        )
        self.part = part
        self.expected = expected
        self.computed = computed


class InvalidMessageLength(EventStreamError):
    """The prelude's lengths are impossible (shorter than a prelude, or headers overrun)."""


class InvalidHeader(EventStreamError):
    """A header is malformed: unknown type, truncated value, bad UTF-8, duplicate name, ..."""


class MessageTooLarge(EventStreamError):
    """Headers, payload or a header value exceed the event-stream limits."""


# --- carrier WebSocket dialects (Twilio Media Streams, Asterisk chan_websocket) -----------
#
# Every carrier error carries the WebSocket close code the daemon sends to the carrier and
# a short reason (at most 123 bytes, the RFC 6455 limit); the codes and their meanings are
# in the one table, :mod:`actors.close_codes`.


class CarrierError(NovaVoiceError):
    """A carrier WebSocket broke its protocol, or failed authentication.

    ``close_code`` is the WebSocket close code to send (4000–4999) and ``reason`` the
    close reason; both are safe to log (no audio, no secrets).
    """

    close_code: CloseCode = CloseCode.CARRIER_PROTOCOL_ERROR

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        # RFC 6455 caps a close reason at 123 bytes of UTF-8.
        self.reason = reason.encode()[:123].decode(errors="ignore")


class CarrierProtocolError(CarrierError):
    """The carrier broke the dialect's protocol."""

    close_code = CloseCode.CARRIER_PROTOCOL_ERROR


class CarrierMalformedMessage(CarrierProtocolError):
    """A message is not UTF-8, not JSON, or lacks or mistypes a required field."""

    close_code = CloseCode.CARRIER_MALFORMED_MESSAGE


class CarrierBadPayload(CarrierProtocolError):
    """A media payload is not valid base64 or has an impossible length."""

    close_code = CloseCode.CARRIER_BAD_PAYLOAD


class CarrierUnexpectedMessage(CarrierProtocolError):
    """A well-formed message arrived in a state that does not allow it."""

    close_code = CloseCode.CARRIER_UNEXPECTED_MESSAGE


class CarrierWrongFrameType(CarrierProtocolError):
    """A BINARY frame arrived where the dialect only allows TEXT (or the reverse)."""

    close_code = CloseCode.CARRIER_WRONG_FRAME_TYPE


class CarrierMessageTooBig(CarrierProtocolError):
    """A message exceeds the dialect's size cap."""

    close_code = CloseCode.CARRIER_MESSAGE_TOO_BIG


class CarrierUnsupportedMedia(CarrierProtocolError):
    """The carrier announced a media format the bridge cannot carry."""

    close_code = CloseCode.CARRIER_UNSUPPORTED_MEDIA


class CarrierStreamMismatch(CarrierProtocolError):
    """A message names a different stream than the one that was started."""

    close_code = CloseCode.CARRIER_STREAM_MISMATCH


class CarrierBufferOverflow(CarrierProtocolError):
    """More early audio arrived before the stream start than the dialect keeps."""

    close_code = CloseCode.CARRIER_BUFFER_OVERFLOW


class CarrierAudioFlood(CarrierProtocolError):
    """The carrier sends caller audio far faster than real time, for long (a flood, not a
    network stall's backlog): ``CALLER_AUDIO_ABUSE_RATE``."""

    close_code = CloseCode.CARRIER_AUDIO_FLOOD


class CarrierLocalError(CarrierError):
    """We asked the dialect for something its state does not allow (a bug on our side)."""

    close_code = CloseCode.CARRIER_LOCAL_ERROR


class CarrierAuthError(CarrierError):
    """The upgrade request failed authentication; ``http_status`` is the refusal status."""

    close_code = CloseCode.CARRIER_FORBIDDEN
    http_status: int = 403


class CarrierUnauthorized(CarrierAuthError):
    """No credentials (or no signature) were presented."""

    close_code = CloseCode.CARRIER_UNAUTHORIZED
    http_status = 401


class CarrierForbidden(CarrierAuthError):
    """Credentials or signature were presented but are wrong."""

    close_code = CloseCode.CARRIER_FORBIDDEN
    http_status = 403


class SonicStreamRefused(SonicConnectionError):
    """The server did not process the stream at all (it was above a GOAWAY's
    ``last_stream_id``, or reset with REFUSED_STREAM), so opening it again is safe."""
