"""Event-loop lag: how late a timed sleep wakes up.

Every call shares one trio loop, so anything that blocks it (a slow synchronous function, a
burst of CPU work, a GC pause) delays every call's audio at once. The monitor sleeps for
``interval`` again and again and records how much later than asked it woke up: on a healthy
loop that is well under a millisecond.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import trio


class LagSink(Protocol):
    """Where lag samples go (:class:`sessions.metrics.Metrics` is one)."""

    def observe_loop_lag(self, seconds: float) -> None:
        """Record one sample, in seconds."""
        ...


async def run_loop_lag_monitor(
    metrics: LagSink,
    interval: float = 0.25,
    *,
    clock: Callable[[], float] = trio.current_time,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Record event-loop lag into ``metrics`` every ``interval`` seconds until cancelled.

    ``clock`` reads the time the lag is measured with (trio's clock by default); tests
    inject one that reports a blocked loop, since under a mock clock no wall time passes.
    """
    if interval <= 0:
        raise ValueError("interval must be positive")
    task_status.started()
    while True:
        asked = clock() + interval
        await trio.sleep(interval)
        metrics.observe_loop_lag(max(0.0, clock() - asked))
