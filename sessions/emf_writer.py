"""Writes the CloudWatch EMF lines of :mod:`sessions.emf` every interval (the I/O half).

Enabled with ``METRICS_CLOUDWATCH_EMF=1``. Every ``METRICS_CLOUDWATCH_INTERVAL_MS`` (60 s by
default) the daemon reads its own Prometheus registry and writes one set of EMF documents,
one JSON object per line:

- to standard output by default (the service log goes to standard error, so stdout carries
  nothing but EMF lines: point the ``awslogs`` driver or the CloudWatch agent at it);
- or, with ``METRICS_CLOUDWATCH_EMF_PATH``, appended to that file (created 0600), for a
  CloudWatch agent tailing a file.

With several workers, each worker writes its own lines (its own deltas) to the same stdout or
file: every line is a single ``write()`` of well under ``PIPE_BUF`` bytes (on a pipe) or an
``O_APPEND`` write (on a file), so lines never interleave. A last set is written when the
daemon stops, so the final interval's counts are not lost.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

import trio

from sessions.emf import EmfFormatter, OriginReading
from sessions.logs import log_event

logger = logging.getLogger(__name__)


def _write_lines(fd: int, lines: list[str]) -> None:
    for line in lines:
        data = memoryview(line.encode())
        while data:
            data = data[os.write(fd, data) :]


async def run_emf_writer(
    read: Callable[[], OriginReading],
    *,
    interval: float,
    path: str | None = None,
    formatter: EmfFormatter | None = None,
    clock: Callable[[], float] = time.time,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Write a set of EMF lines every ``interval`` seconds until cancelled, then a last one.

    ``read`` takes the current :class:`~sessions.emf.OriginReading` (usually
    ``functools.partial(read_registry, metrics.registry)``); ``path`` None means stdout.
    A failed write is logged and retried at the next interval (the counts are deltas since
    the last set built, so a lost set is lost, never double counted).
    """
    fmt = formatter or EmfFormatter()
    if path is None:
        fd, owned = 1, False
    else:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        fd, owned = await trio.to_thread.run_sync(os.open, path, flags, 0o600), True

    async def write_set() -> None:
        lines = fmt.lines(read(), int(clock() * 1000))
        try:
            await trio.to_thread.run_sync(_write_lines, fd, lines)
        except OSError as exc:
            log_event(logger, "emf_write_failed", level=logging.WARNING, error=repr(exc))

    try:
        task_status.started()
        while True:
            await trio.sleep(interval)
            await write_set()
    finally:
        with trio.move_on_after(2.0, shield=True):
            await write_set()
        if owned:
            os.close(fd)
