"""How much caller audio a call may send: a token bucket on a clock its owner passes in.

Sans-IO: no clock is read here. The carrier link calls :meth:`FrameBudget.admit` once per
caller frame with trio's time (read once per frame, for the idle timeout, anyway) and the
frame's size in the carrier's own bytes, so the check costs a few float operations and no
allocation.

Two buckets, checked together:

- **the budget**: refilled at ``rate`` (bytes per second: a multiple of real time) up to
  ``burst`` bytes. A frame that finds too little in it is **dropped** (:attr:`Verdict.DROP`).
  A carrier sends in real time, so a full bucket stays full; after a network stall it
  delivers the backlog at once, and the burst absorbs a stall up to ``burst`` seconds of
  audio (at a rate of 2 the bucket refills at twice real time, so it has recovered a
  second after a stall of a second). A sender faster than ``rate`` has its excess dropped:
  over any window of ``T`` seconds at most ``burst + rate * T`` worth reaches Sonic.
- **the abuse limit**: the same at a higher rate and burst, charged for *every* frame,
  dropped or not. Emptying it means the carrier floods rather than jitters (for example
  ten times real time for half a minute), and the call is closed (:attr:`Verdict.ABUSE`).

A disabled bucket is infinite (``math.inf`` never runs out), so the hot path has no
branch for "off".
"""

from __future__ import annotations

import enum
import math


class Verdict(enum.IntEnum):
    """What to do with one frame. ``ADMIT`` is 0, so ``if verdict:`` means "not admitted"."""

    ADMIT = 0
    DROP = 1
    """Over the budget: drop the frame and count it (``rate_limited``)."""
    ABUSE = 2
    """Over the abuse limit: close the call."""


# The members as plain globals: on CPython 3.11 ``Verdict.ADMIT`` goes through the enum's
# class-attribute machinery (about 0.6 µs here), a global lookup costs about 0.04 µs.
_ADMIT, _DROP, _ABUSE = Verdict.ADMIT, Verdict.DROP, Verdict.ABUSE


class FrameBudget:
    """The caller-audio budget of one call (see the module docstring).

    ``rate`` and ``abuse_rate`` are in units per second, ``burst`` and ``abuse_burst`` in
    units (the carrier link uses the carrier's bytes); a rate of 0 disables its bucket.
    Both buckets start full at ``now``.
    """

    __slots__ = (
        "_abuse_burst",
        "_abuse_level",
        "_abuse_rate",
        "_burst",
        "_level",
        "_rate",
        "_stamp",
    )

    def __init__(
        self, *, rate: float, burst: float, abuse_rate: float, abuse_burst: float, now: float
    ) -> None:
        if rate < 0 or abuse_rate < 0 or burst <= 0 or abuse_burst <= 0:
            raise ValueError("rates must be non-negative and bursts positive")
        self._rate = rate
        self._burst = burst if rate else math.inf
        self._level = self._burst
        self._abuse_rate = abuse_rate
        self._abuse_burst = abuse_burst if abuse_rate else math.inf
        self._abuse_level = self._abuse_burst
        self._stamp = now

    @property
    def level(self) -> float:
        """Units the budget holds now (as of the last :meth:`admit`)."""
        return self._level

    def grant(self, units: float) -> None:
        """Credit ``units`` once, above the burst if need be.

        For audio that arrived in real time but is delivered at once: Asterisk's audio from
        before ``MEDIA_START``, which the dialect holds (capped) and replays after the start.
        The credit is spent before the refill starts again; it is never refilled.
        """
        self._level += units
        self._abuse_level += units

    def admit(self, now: float, units: float) -> Verdict:
        """Charge one frame of ``units`` arriving at ``now`` (never earlier than the last)."""
        elapsed = now - self._stamp
        self._stamp = now
        # The abuse limit sees every frame: a dropped frame still arrived.
        level = self._abuse_level
        if level < self._abuse_burst:
            level += elapsed * self._abuse_rate
            if level > self._abuse_burst:
                level = self._abuse_burst
        level -= units
        self._abuse_level = level
        if level < 0:
            return _ABUSE
        level = self._level
        if level < self._burst:
            level += elapsed * self._rate
            if level > self._burst:
                level = self._burst
        if level < units:
            self._level = level
            return _DROP
        self._level = level - units
        return _ADMIT
