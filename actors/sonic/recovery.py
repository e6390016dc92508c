"""Which Sonic failures a call survives, and how often: the one classification and the budget.

A running call's Sonic stream can fail in ways that say nothing about the next stream: the
HTTP/2 stream is reset, the connection is lost (GOAWAY then a dropped socket), Bedrock sends
``modelStreamErrorException``, ``throttlingException``, ``internalServerException`` or
``serviceUnavailableException``, a frame arrives with a bad CRC, or the model stops
answering (a stall, :class:`~actors.errors.SonicStalled`). :func:`failure_reason` is the
one place that tells these *transient* failures (a bounded reason label) from *permanent*
ones (``None``): access denied (403), ``validationException`` (400), an unknown model, a
protocol bug of ours. Permanent errors are never retried.

Two ``validationException`` messages are transient, as LiveKit found in production
(reference nova-sonic.md §4, "Transient stream errors seen in prod"):
``InternalErrorCode=531::RST_STREAM closed stream`` and ``System instability detected``.

:class:`RecoveryBudget` bounds the retries of one call: at most ``max_attempts`` new streams
per call, each preceded by a back-off with *full jitter* (uniform between 0 and
``min(backoff_max, backoff * 2**n)``, n the attempts already made for the same failure), so
a fleet of calls hit by the same outage (a GOAWAY fails every stream of a connection) does
not come back in lockstep. The exponent restarts with each new failure: an outage an hour
ago does not slow the recovery from today's reset; the per-call total bounds the cost.
"""

from __future__ import annotations

import random
from typing import Literal, get_args

import attrs
import numpy as np

from actors.errors import (
    EventStreamError,
    SonicConnectionError,
    SonicError,
    SonicHTTPError,
    SonicStalled,
    SonicStreamError,
    SonicStreamRefused,
    SonicStreamReset,
    SonicTimeout,
)

__all__ = [
    "RECOVERY_REASONS",
    "RecoveryBudget",
    "RecoveryPolicy",
    "RecoveryReason",
    "failure_reason",
    "is_speech",
    "is_transient",
]

SPEECH_RMS = 200
"""PCM16 RMS above which caller audio counts as speech for the stall watchdog: about
-44 dBFS, the threshold ``sessions.carrier_link`` uses for the idle timeout (above line
noise and comfort silence, well below quiet speech)."""
_SPEECH_ENERGY = SPEECH_RMS * SPEECH_RMS

RecoveryReason = Literal[
    "stream_reset",
    "goaway",
    "connection_lost",
    "model_stream_error",
    "model_timeout",
    "throttling",
    "internal_error",
    "checksum",
    "timeout",
    "stall",
]
"""Why a stream was replaced reactively (a bounded metrics label)."""

RECOVERY_REASONS: tuple[RecoveryReason, ...] = get_args(RecoveryReason)
"""Every reason, in the Literal's order (metrics pre-create their labels from it)."""

_STREAM_EXCEPTIONS: dict[str, RecoveryReason] = {
    "modelStreamErrorException": "model_stream_error",
    "modelTimeoutException": "model_timeout",
    "throttlingException": "throttling",
    "internalServerException": "internal_error",
    "serviceUnavailableException": "internal_error",
}

# validationException messages that Bedrock sends for its own transient trouble
# (reference nova-sonic.md §4; LiveKit RECOVERABLE_VALIDATION_ERROR_MESSAGES).
_TRANSIENT_VALIDATION = ("RST_STREAM closed stream", "System instability detected")

_HTTP_TYPES: dict[str, RecoveryReason] = {
    "ThrottlingException": "throttling",
    "ModelNotReadyException": "throttling",
    "ServiceUnavailableException": "internal_error",
    "InternalServerException": "internal_error",
    "ModelStreamErrorException": "model_stream_error",
    "ModelTimeoutException": "model_timeout",
}


def failure_reason(exc: BaseException) -> RecoveryReason | None:
    """The reason label of a transient Sonic failure, or ``None`` if it is permanent.

    Only errors that a *new* stream may not repeat are transient; anything that is not a
    :class:`~actors.errors.SonicError` (a bug, a cancellation) is never.
    """
    if not isinstance(exc, SonicError):
        return None
    if isinstance(exc, SonicStalled):
        return "stall"
    if isinstance(exc, SonicStreamError):
        reason = _STREAM_EXCEPTIONS.get(exc.exception_type)
        if reason is not None:
            return reason
        if exc.exception_type == "validationException" and any(
            marker in exc.message for marker in _TRANSIENT_VALIDATION
        ):
            return "stream_reset"
        return None
    if isinstance(exc, EventStreamError):
        # A bad CRC (or framing that a flipped bit made impossible): the bytes were
        # damaged in transit; the next stream's are not.
        return "checksum"
    if isinstance(exc, SonicStreamRefused):
        return "goaway"
    if isinstance(exc, SonicStreamReset):
        return "stream_reset"
    if isinstance(exc, SonicConnectionError):
        return "connection_lost"
    if isinstance(exc, SonicTimeout):
        return "timeout"
    if isinstance(exc, SonicHTTPError):
        # Opening the replacement stream was refused: throttling and server faults pass,
        # 400 (validation), 403 (access denied) and 404 (unknown model) do not.
        reason = _HTTP_TYPES.get(exc.error_type)
        if reason is None and exc.status >= 500:
            reason = "internal_error"
        return reason
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether a new stream may succeed where this failure happened (see the module)."""
    return failure_reason(exc) is not None


@attrs.frozen(kw_only=True)
class RecoveryPolicy:
    """How a call recovers from transient Sonic failures (``SONIC_RECOVERY_*`` settings)."""

    max_attempts: int = 8
    """New streams a call may open to recover, in all (0: never recover)."""
    backoff: float = 0.2
    """Seconds: the cap of the first back-off, doubled for each later attempt."""
    backoff_max: float = 5.0
    """Seconds: no back-off is longer than this."""
    stall_timeout: float = 8.0
    """Seconds of no Sonic output after caller speech that count as a stall (0: off)."""


@attrs.define(eq=False)
class RecoveryBudget:
    """One call's recovery attempts (see the module docstring)."""

    policy: RecoveryPolicy
    rng: random.Random = attrs.field(factory=random.Random)
    attempts: int = 0
    """Attempts made so far (successful or not)."""
    recovered: int = 0
    """Failures after which the call went on, on a new stream."""
    by_reason: dict[str, int] = attrs.field(factory=dict)
    """Transient failures seen, by reason label (for the call-end line)."""

    @property
    def exhausted(self) -> bool:
        """No attempt left."""
        return self.attempts >= self.policy.max_attempts

    def next_delay(self, streak: int = 0) -> float:
        """Take one attempt and return its back-off in seconds (full jitter).

        ``streak`` is how many attempts already failed for the same failure (0 first).
        """
        cap = min(self.policy.backoff_max, self.policy.backoff * (2.0**streak))
        self.attempts += 1
        return self.rng.uniform(0.0, cap)

    def failed(self, reason: str) -> None:
        """Count one transient failure under ``reason``."""
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1


def is_speech(pcm: bytes) -> bool:
    """Whether PCM16LE audio is louder than :data:`SPEECH_RMS` (mean energy, not a peak)."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    return len(samples) > 0 and float(np.dot(samples, samples)) > _SPEECH_ENERGY * len(samples)
