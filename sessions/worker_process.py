"""One worker of ``novavoice serve --workers N``: the whole daemon on inherited sockets.

Started by the parent (:mod:`sessions.workers`) as ``python -m sessions.worker_process``,
never by hand. A worker is a complete single-process daemon (its own prompt cache, Sonic
connection pool and metrics) with three differences:

- it accepts carriers on the listening sockets it inherited (``--listen-fd``), never binding;
- its admin endpoint listens on 127.0.0.1, port 0; once up it writes one JSON line
  ``{"worker": i, "pid": ..., "admin": "127.0.0.1:PORT"}`` on ``--status-fd`` and closes it;
- it obeys commands on standard input, one per line, from the parent: ``drain`` (as a first
  SIGTERM) and ``stop`` (as a second); end of input means the parent is gone, and drains.

Signals sent to the worker itself still work as in a single process (first drains, second
stops), but a ``drain`` command and a direct signal are the same first step: systemd or a
terminal signal the whole process group, and the parent forwards the signal too, so counting
both as two signals would stop calls at once instead of draining them.

SIGHUP (forwarded by the parent) reopens the call log and reloads the TLS certificate, as in
a single process.

Every log line of a worker carries ``worker`` (its index) and ``pid``.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import signal
import socket
import sys

import attrs
import trio

from sessions.config import Settings, load_settings
from sessions.logs import configure_logging, log_event
from sessions.serve import DaemonOverrides, open_daemon

logger = logging.getLogger("novavoice.worker")


class _WorkerFields(logging.Filter):
    """Stamps the worker's index and pid on every record."""

    def __init__(self, worker: int) -> None:
        super().__init__()
        self.worker = worker
        self.pid = os.getpid()

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the fields; never drops a record."""
        record.worker = self.worker
        record.pid = self.pid
        return True


@attrs.define(eq=False)
class _Stopper:
    """Turns signals and parent commands into the two stop steps: drain, then stop now."""

    drain_requested: trio.Event = attrs.field(factory=trio.Event)
    stop_requested: trio.Event = attrs.field(factory=trio.Event)
    signals: int = 0

    def command(self, word: str) -> None:
        if word == "drain":
            self.drain_requested.set()
        elif word == "stop":
            self.drain_requested.set()
            self.stop_requested.set()

    def signal(self) -> None:
        self.signals += 1
        self.command("drain" if self.signals == 1 else "stop")


async def _read_commands(stopper: _Stopper) -> None:
    stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    buffer = b""
    async with stream:
        while chunk := await stream.receive_some(1024):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                stopper.command(line.decode(errors="replace").strip())
    log_event(logger, "parent_gone", level=logging.WARNING)
    stopper.command("drain")


async def run_worker(
    settings: Settings, worker: int, sockets: tuple[socket.socket, ...], status_fd: int
) -> None:
    """Serve on ``sockets`` until told to stop; drain on the first request, stop on the second."""
    stopper = _Stopper()
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        # insecure=True: the parent checked the listen address before binding it.
        overrides = DaemonOverrides(carrier_sockets=sockets)
        async with (
            open_daemon(settings, overrides, insecure=True) as daemon,
            trio.open_nursery() as nursery,
        ):
            admin = daemon.admin_url.removeprefix("http://")
            line = json.dumps({"worker": worker, "pid": os.getpid(), "admin": admin}) + "\n"
            os.write(status_fd, line.encode())
            os.close(status_fd)

            async def watch_signals() -> None:
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        daemon.reload()
                        continue
                    log_event(logger, "signal", signal=signal.Signals(signum).name)
                    stopper.signal()

            nursery.start_soon(watch_signals)
            nursery.start_soon(_read_commands, stopper)
            await stopper.drain_requested.wait()
            async with trio.open_nursery() as stopping:

                async def drain() -> None:
                    await daemon.supervisor.drain(settings.listen.drain_timeout)
                    stopping.cancel_scope.cancel()

                async def stop_now() -> None:
                    await stopper.stop_requested.wait()
                    daemon.supervisor.end_all_calls()
                    stopping.cancel_scope.cancel()

                stopping.start_soon(drain)
                stopping.start_soon(stop_now)
            nursery.cancel_scope.cancel()
    log_event(logger, "stopped")


def main(argv: list[str] | None = None) -> int:
    """Entry point of a worker process (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="novavoice-worker")
    parser.add_argument("--worker", type=int, required=True)
    parser.add_argument("--listen-fd", type=int, action="append", required=True)
    parser.add_argument("--status-fd", type=int, required=True)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    configure_logging(args.log_level.upper())
    fields = _WorkerFields(args.worker)
    for handler in logging.getLogger().handlers:
        handler.addFilter(fields)
    settings = load_settings().replace(listen={"admin_address": ("127.0.0.1", 0), "workers": 1})
    sockets = tuple(socket.socket(fileno=fd) for fd in args.listen_fd)
    trio.run(functools.partial(run_worker, settings, args.worker, sockets, args.status_fd))
    return 0


if __name__ == "__main__":  # pragma: no cover - run by the parent as a subprocess
    sys.exit(main())
