"""Cost of the caller-audio budget per frame (``actors/frame_budget.py``).

Prints nanoseconds per ``FrameBudget.admit`` (best of 5 runs) for frames in real time
(admitted) and for a flood (dropped), next to an empty method call with the same arguments
as the floor. The carrier link calls it once per caller frame, about 50 times a second per
call. Run: ``.venv/bin/python bench/frame_budget.py`` (on a loaded machine the figures
swing by 2x or more between runs: compare the rows of one run).
"""

from __future__ import annotations

import timeit
from collections.abc import Callable

from actors.frame_budget import FrameBudget

FRAMES = 100_000


class _Empty:
    __slots__ = ()

    def admit(self, now: float, units: float) -> int:
        return 0


def _budget() -> FrameBudget:
    per_second = 8000  # μ-law bytes
    return FrameBudget(
        rate=2 * per_second,
        burst=5 * per_second,
        abuse_rate=10 * per_second,
        abuse_burst=30 * per_second,
        now=0.0,
    )


def _ns(make: Callable[[], FrameBudget | _Empty], times: list[float]) -> float:
    best = float("inf")
    for _ in range(5):
        admit = make().admit  # a fresh budget each run: its clock only moves forward
        start = timeit.default_timer()
        for t in times:
            admit(t, 160)
        best = min(best, timeit.default_timer() - start)
    return best / len(times) * 1e9


def main() -> None:
    """Print the per-frame cost of the budget, admitted and dropped, and the floor."""
    real_time = [i * 0.02 for i in range(FRAMES)]
    flood = [1.0 + i * 1e-6 for i in range(FRAMES)]  # far beyond the rate: mostly dropped
    print(f"empty method call          {_ns(_Empty, real_time):7.0f} ns/frame")
    print(f"admit, real time (kept)    {_ns(_budget, real_time):7.0f} ns/frame")
    print(f"admit, flood (dropped)     {_ns(_budget, flood):7.0f} ns/frame")


if __name__ == "__main__":
    main()
