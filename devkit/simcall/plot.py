"""The load run as a PNG: concurrency, first-audio percentiles and errors over time.

matplotlib is imported here, inside the function, with the non-interactive Agg backend,
so only ``novavoice loadtest --png`` pays for it (about 0.5 s and 30 MB).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["write_png"]


def write_png(rows: Sequence[dict[str, Any]], path: str | Path, *, title: str) -> None:
    """Draw the per-second ``rows`` of :func:`devkit.simcall.aggregate.timeline`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [row["t"] for row in rows]
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, sharex=True, figsize=(9, 8))
    try:
        ax1.step(t, [row["active"] for row in rows], where="post", color="tab:blue")
        ax1.set_ylabel("calls active")
        ax1.set_title(title)
        for key, label, color in (
            ("first_audio_p50_s", "p50", "tab:green"),
            ("first_audio_p99_s", "p99", "tab:orange"),
        ):
            values = [row[key] if row[key] is not None else float("nan") for row in rows]
            ax2.plot(t, values, label=label, color=color)
        ax2.set_ylabel("first audio (s)")
        ax2.legend(loc="upper left")
        ax3.bar(t, [row["ended"] - row["failed"] for row in rows], color="tab:gray", label="ok")
        ax3.bar(
            t,
            [row["failed"] for row in rows],
            bottom=[row["ended"] - row["failed"] for row in rows],
            color="tab:red",
            label="failed",
        )
        ax3.set_ylabel("calls ended")
        ax3.set_xlabel("seconds since start")
        ax3.legend(loc="upper left")
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=100)
    finally:
        plt.close(fig)
