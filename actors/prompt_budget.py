"""One time budget for loading a call's prompt, and every deadline derived from it.

The operator sets one number, ``PROMPT_LOAD_TIMEOUT_MS`` (the budget ``B``). Every layer of
the prompt path takes its deadline from :class:`PromptLoadBudget`, so none can outlast it:

==========================  ==============================  =======  =======
layer                       deadline                        formula  B = 5 s
==========================  ==============================  =======  =======
one call's prompt load      ``PromptFetcher.timeout``       B        5 s
the cache's shared S3 read  ``fetch_timeout`` of the cache  B        5 s
botocore attempts           ``max_attempts``                A        2
botocore connect, per try   ``connect_timeout``             T / 2    1 s
botocore read, per try      ``read_timeout``                T / 2    1 s
==========================  ==============================  =======  =======

where ``R`` = 1 s is reserved for each retry's back-off (botocore's standard retry mode
waits ``rand(0, 1)`` seconds before its first retry), ``A`` is 2 (one retry) when each
attempt still gets at least 1 s (``B ≥ 3 s``), else 1, and ``T = (B − R·(A − 1)) / A`` is
one attempt's share. So ``A·T + R·(A − 1) = B``: an S3 read that uses every second botocore
allows still ends within the budget, and the worker thread it occupies (with its slot of
the S3 capacity limiter) is free again about when the call gives up. Two limits of that
bound, for the record: botocore's read timeout bounds each socket read rather than the
whole body (a prompt is at most ``PROMPT_MAX_BYTES``, 64 KiB by default: a few reads), and
an ``x-amz-retry-after`` header may lengthen the back-off. The trio deadlines above are the
hard bound callers see.

The cache's read gets the whole budget, not what is left of the first caller's: it is
shared by every call waiting for that assistant, and each of them stops waiting at its own
deadline while the read carries on for the rest.
"""

from __future__ import annotations

import attrs

RETRY_BACKOFF_ALLOWANCE = 1.0
"""Seconds reserved for botocore's back-off before a retry (standard mode: at most 1 s
before the first retry)."""

MIN_ATTEMPT_SECONDS = 1.0
"""A retry is configured only if every attempt still gets this long (connect plus read)."""


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be positive, not {value!r}")


@attrs.frozen
class PromptLoadBudget:
    """The prompt-load budget, in seconds, and the deadlines derived from it."""

    total: float = attrs.field(validator=_positive)
    """How long one call may spend loading its prompt (``PROMPT_LOAD_TIMEOUT_MS``)."""

    @property
    def call_timeout(self) -> float:
        """Deadline of one call's load (:class:`~actors.prompt_fetch.PromptFetcher`)."""
        return self.total

    @property
    def cache_fetch_timeout(self) -> float:
        """Deadline of the cache's shared store read (``open_prompt_cache(fetch_timeout=)``)."""
        return self.total

    @property
    def s3_max_attempts(self) -> int:
        """botocore's ``max_attempts``: one retry when it fits in the budget."""
        with_retry = (self.total - RETRY_BACKOFF_ALLOWANCE) / 2
        return 2 if with_retry >= MIN_ATTEMPT_SECONDS else 1

    @property
    def s3_attempt_timeout(self) -> float:
        """One botocore attempt's share of the budget (connect plus read)."""
        attempts = self.s3_max_attempts
        return (self.total - RETRY_BACKOFF_ALLOWANCE * (attempts - 1)) / attempts

    @property
    def s3_connect_timeout(self) -> float:
        """botocore's ``connect_timeout`` per attempt."""
        return self.s3_attempt_timeout / 2

    @property
    def s3_read_timeout(self) -> float:
        """botocore's ``read_timeout`` per attempt."""
        return self.s3_attempt_timeout / 2
