"""The loop-lag monitor records how late its sleeps wake, measured with an injected clock."""

from __future__ import annotations

from functools import partial

import pytest
import trio

from sessions.loop_lag import run_loop_lag_monitor
from sessions.metrics import Metrics


class Recorder:
    def __init__(self) -> None:
        self.samples: list[float] = []

    def observe_loop_lag(self, seconds: float) -> None:
        self.samples.append(seconds)


async def test_records_injected_lag(autojump_clock: trio.abc.Clock) -> None:
    # Under the mock clock a sleep wakes exactly on time, so a "blocked loop" is simulated by
    # a clock that jumps ahead: each wake-up reading is 30 ms later than trio's time.
    readings = 0

    def blocked_clock() -> float:
        nonlocal readings
        readings += 1
        late = 0.030 * (readings // 2)  # every second reading is after a wake-up
        return trio.current_time() + late

    recorder = Recorder()
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(run_loop_lag_monitor, recorder, 1.0, clock=blocked_clock))
        await trio.sleep(3.5)
        nursery.cancel_scope.cancel()
    assert len(recorder.samples) == 3
    assert recorder.samples == pytest.approx([0.030, 0.030, 0.030])


async def test_on_time_wakeups_record_zero(autojump_clock: trio.abc.Clock) -> None:
    recorder = Recorder()
    async with trio.open_nursery() as nursery:
        await nursery.start(run_loop_lag_monitor, recorder, 0.5)
        await trio.sleep(2.25)
        nursery.cancel_scope.cancel()
    assert recorder.samples == [0.0, 0.0, 0.0, 0.0]


async def test_feeds_the_metrics_object(autojump_clock: trio.abc.Clock) -> None:
    metrics = Metrics(process_metrics=False)
    # readings: start, wake (0.25 s late), next start, wake (0.5 s late), next start
    ticks = iter([0.0, 1.25, 1.25, 2.75, 2.75])
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(run_loop_lag_monitor, metrics, 1.0, clock=lambda: next(ticks)))
        await trio.sleep(2.5)
        nursery.cancel_scope.cancel()
    assert metrics.registry.get_sample_value("novavoice_event_loop_lag_seconds_count") == 2
    assert metrics.registry.get_sample_value("novavoice_event_loop_lag_seconds_sum") == 0.75
    assert metrics.registry.get_sample_value("novavoice_event_loop_lag_last_seconds") == 0.5


async def test_rejects_a_non_positive_interval() -> None:
    with pytest.raises(ValueError):
        await run_loop_lag_monitor(object(), 0)  # type: ignore[arg-type]
