"""``novavoice serve --workers N`` (N > 1): a parent process and N worker processes.

One trio event loop uses one core, so a host with several cores runs several workers, each a
complete daemon (:mod:`sessions.worker_process`) with its own prompt cache, Sonic pool and
metrics. The parent serves no calls; it owns what must be single per host:

**The listening socket: bound once here, inherited by the workers.** The parent binds the
carrier address (port 0 works: the port is known before any worker starts) and passes the
listening socket to each worker, which accepts on it; the kernel hands each connection to
whichever worker accepts first, so a worker busy with many calls naturally takes fewer. This
was chosen over ``SO_REUSEPORT`` (each worker binding the port itself) because:

- a worker that crashes loses nothing queued: with ``SO_REUSEPORT`` each worker has its own
  accept queue, and connections waiting in a dead worker's queue are reset, whereas here they
  wait in the one shared queue for another worker (or the restarted one);
- port 0 and restarts need no trick: with ``SO_REUSEPORT`` the parent would have to hold a
  bound, non-listening socket to reserve the port, and the port is unbound while no worker runs;
- ``SO_REUSEPORT`` spreads connections by a hash of the address, blind to each worker's load.

The cost is that every idle worker wakes up for each new connection and all but one find
nothing to accept: negligible at call set-up rates (tens per second, not thousands).

**Worker life.** Each worker slot starts its process, waits for its status line (its private
admin address on 127.0.0.1), and when the process exits unexpectedly starts it again after a
backoff (:class:`Backoff`: 0.5 s doubling to 30 s, back to 0.5 s once a worker has run 30 s).

**Signals.** The first SIGTERM or SIGINT makes the parent unready, closes its copy of the
listening socket and sends ``drain`` to every worker (through the worker's standard input;
see :mod:`sessions.worker_process` for why not a signal); no worker is restarted from then
on. A second signal sends ``stop``: every call ends at once. The parent exits once every
worker has exited (any still running ``DRAIN_TIMEOUT_MS`` + 30 s after the drain began are
killed), with status 0 if all of them exited cleanly. SIGHUP is forwarded to every running
worker, which reopens its call log (logrotate) and reloads its TLS certificate
(:mod:`sessions.tls`: every worker serves TLS on the inherited socket with its own context).

**The admin address** (``NOVAVOICE_ADMIN_LISTEN``) is the parent's: ``/healthz`` answers while
the parent runs; ``/readyz`` is 200 while at least one worker is ready and the parent is not
draining (workers' ``/readyz`` are probed every second); ``/metrics`` scrapes every worker at
request time and merges them (:mod:`sessions.metrics_merge`), plus the parent's own
``novavoice_workers_configured``, ``novavoice_workers_healthy`` (workers whose admin endpoint
answered the last probe) and ``novavoice_worker_restarts_total``.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterable

import attrs
import trio
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.metrics_core import Metric

from sessions.admin import Health, serve_admin
from sessions.admin_client import http_get
from sessions.config import Settings
from sessions.logs import log_event
from sessions.metrics_merge import MetricsMerger

logger = logging.getLogger("novavoice.workers")

PROBE_INTERVAL = 1.0
PROBE_TIMEOUT = 1.0
SCRAPE_TIMEOUT = 2.0
START_TIMEOUT = 30.0
KILL_GRACE = 30.0


@attrs.define
class Backoff:
    """Restart delays: exponential from ``initial`` up to ``cap``, reset after a stable run."""

    initial: float = 0.5
    cap: float = 30.0
    stable: float = 30.0
    _next: float | None = None

    def delay(self, ran_for: float) -> float:
        """The wait before restarting a worker that exited after ``ran_for`` seconds."""
        if self._next is None or ran_for >= self.stable:
            self._next = self.initial
        delay = self._next
        self._next = min(self.cap, delay * 2)
        return delay


@attrs.define(eq=False)
class WorkerSlot:
    """One worker position: its current process, admin address and last probe."""

    index: int
    backoff: Backoff = attrs.field(factory=Backoff)
    process: trio.Process | None = None
    admin: tuple[str, int] | None = None
    healthy: bool = False
    ready: bool = False


class _MergedCollector:
    """Exposes the merger's latest merged families in the parent's registry."""

    def __init__(self, merger: MetricsMerger) -> None:
        self._merger = merger

    def collect(self) -> Iterable[Metric]:
        return self._merger.merged()


@attrs.define(eq=False)
class ParentMetrics:
    """The parent's registry: merged worker metrics plus the parent's own."""

    registry: CollectorRegistry
    merger: MetricsMerger
    configured: Gauge
    healthy: Gauge
    restarts: Counter

    @classmethod
    def create(cls) -> ParentMetrics:
        """Build the registry and its metrics."""
        r = CollectorRegistry()
        merger = MetricsMerger()
        r.register(_MergedCollector(merger))
        return cls(
            registry=r,
            merger=merger,
            configured=Gauge(
                "novavoice_workers_configured", "Worker processes configured.", registry=r
            ),
            healthy=Gauge(
                "novavoice_workers_healthy",
                "Worker processes whose admin endpoint answered the last probe.",
                registry=r,
            ),
            restarts=Counter(
                "novavoice_worker_restarts", "Worker processes restarted after exiting.", registry=r
            ),
        )


@attrs.define(eq=False)
class WorkerPool:
    """The parent's state: the slots, readiness, metrics, and whether it is draining."""

    settings: Settings
    sockets: tuple[trio.socket.SocketType, ...]
    slots: list[WorkerSlot]
    metrics: ParentMetrics
    health: Health = attrs.field(factory=Health)
    log_level: str = "INFO"
    clean_exits: bool = True
    _drain_event: trio.Event = attrs.field(factory=trio.Event)

    @property
    def draining(self) -> bool:
        """Whether the first stop signal came (no worker is restarted from then on)."""
        return self._drain_event.is_set()

    # --- one worker slot ------------------------------------------------------------------

    async def run_slot(self, slot: WorkerSlot) -> None:
        """Keep ``slot``'s worker running until the pool drains; returns when it has exited."""
        while not self.draining:
            started = trio.current_time()
            code = await self._run_once(slot)
            slot.admin, slot.healthy, slot.ready = None, False, False
            self.metrics.merger.retire(slot.index)
            self._update_readiness()
            if self._drain_event.is_set():  # (a call: mypy would keep the loop's narrowing)
                if code != 0:
                    self.clean_exits = False
                log_event(logger, "worker_exited", worker=slot.index, exit_code=code)
                return
            delay = slot.backoff.delay(trio.current_time() - started)
            log_event(
                logger,
                "worker_crashed",
                level=logging.ERROR,
                worker=slot.index,
                exit_code=code,
                restart_in_s=delay,
            )
            self.metrics.restarts.inc()
            with trio.move_on_after(delay):
                await self._drain_event.wait()

    async def _run_once(self, slot: WorkerSlot) -> int:
        read_fd, write_fd = os.pipe()
        fds = [s.fileno() for s in self.sockets]
        command = [sys.executable, "-m", "sessions.worker_process", "--worker", str(slot.index)]
        command += [arg for fd in fds for arg in ("--listen-fd", str(fd))]
        command += ["--status-fd", str(write_fd), "--log-level", self.log_level]
        try:
            process = await trio.lowlevel.open_process(
                command, stdin=subprocess.PIPE, pass_fds=(*fds, write_fd)
            )
        except OSError as exc:
            os.close(read_fd)
            log_event(logger, "worker_spawn_failed", level=logging.ERROR, error=repr(exc))
            return -1
        finally:
            os.close(write_fd)
        slot.process = process
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read_status, slot, read_fd)
                code = await process.wait()
                nursery.cancel_scope.cancel()
            return code
        finally:
            slot.process = None
            with trio.move_on_after(5, shield=True):
                if process.returncode is None:
                    process.kill()
                    await process.wait()

    async def _read_status(self, slot: WorkerSlot, read_fd: int) -> None:
        """The worker's one status line: its admin address. Kill it if none comes in time."""
        stream = trio.lowlevel.FdStream(read_fd)
        data = b""
        async with stream:
            with trio.move_on_after(START_TIMEOUT):
                while b"\n" not in data and (chunk := await stream.receive_some(4096)):
                    data += chunk
        try:
            status = json.loads(data)
            host, _, port = str(status["admin"]).rpartition(":")
            slot.admin = (host, int(port))
        except (ValueError, KeyError, TypeError):
            if slot.process is not None and slot.process.returncode is None:
                log_event(logger, "worker_start_failed", level=logging.ERROR, worker=slot.index)
                slot.process.kill()
            return
        await self._probe(slot)

    async def _command(self, slot: WorkerSlot, line: bytes) -> None:
        process = slot.process
        if process is None or process.stdin is None:
            return
        try:
            with trio.move_on_after(1.0):
                await process.stdin.send_all(line)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the worker is exiting already

    # --- readiness and metrics --------------------------------------------------------------

    async def _probe(self, slot: WorkerSlot) -> None:
        admin = slot.admin
        if admin is None:
            return
        try:
            with trio.fail_after(PROBE_TIMEOUT):
                status, _ = await http_get(*admin, "/readyz")
        except (OSError, trio.TooSlowError, ValueError):
            status = 0
        slot.healthy = status in (200, 503)
        slot.ready = status == 200
        self._update_readiness()

    async def run_probes(self) -> None:
        """Probe every worker's ``/readyz`` each second, until cancelled."""
        while True:
            async with trio.open_nursery() as nursery:
                for slot in self.slots:
                    nursery.start_soon(self._probe, slot)
            await trio.sleep(PROBE_INTERVAL)

    def _update_readiness(self) -> None:
        self.metrics.healthy.set(sum(slot.healthy for slot in self.slots))
        if self.draining:
            self.health.set_not_ready("draining")
        elif any(slot.ready for slot in self.slots):
            self.health.set_ready()
        else:
            self.health.set_not_ready("no worker ready")

    async def refresh_metrics(self) -> None:
        """Scrape every worker's ``/metrics`` into the merger (the admin server awaits it)."""

        async def scrape(slot: WorkerSlot) -> None:
            admin = slot.admin
            if admin is None:
                return
            try:
                with trio.fail_after(SCRAPE_TIMEOUT):
                    status, body = await http_get(*admin, "/metrics")
                if status != 200:
                    raise ValueError(f"status {status}")
                if slot.admin == admin:  # not a worker that exited (and was retired) meanwhile
                    self.metrics.merger.update(slot.index, body.decode())
            except (OSError, trio.TooSlowError, ValueError) as exc:
                # Keep the worker's last good figures: dropping them would make the merged
                # counters go backwards for one scrape.
                log_event(logger, "worker_scrape_failed", worker=slot.index, error=repr(exc))

        async with trio.open_nursery() as nursery:
            for slot in self.slots:
                nursery.start_soon(scrape, slot)

    # --- stopping ------------------------------------------------------------------------

    async def drain(self) -> None:
        """First signal: unready, stop listening here, and tell every worker to drain."""
        self._drain_event.set()
        self._update_readiness()
        for sock in self.sockets:
            sock.close()  # the workers hold their own copies until they stop accepting
        async with trio.open_nursery() as nursery:
            for slot in self.slots:
                nursery.start_soon(self._command, slot, b"drain\n")

    async def stop_all(self) -> None:
        """Second signal: every worker ends its calls at once."""
        async with trio.open_nursery() as nursery:
            for slot in self.slots:
                nursery.start_soon(self._command, slot, b"stop\n")

    def forward_signal(self, signum: signal.Signals) -> None:
        """Send ``signum`` to every running worker (SIGHUP: reopen the call log)."""
        for slot in self.slots:
            if slot.process is not None and slot.process.returncode is None:
                slot.process.send_signal(signum)

    def kill_all(self) -> None:
        """Last resort past the drain deadline: kill the workers still running."""
        for slot in self.slots:
            if slot.process is not None and slot.process.returncode is None:
                log_event(logger, "worker_killed", level=logging.ERROR, worker=slot.index)
                slot.process.kill()
                self.clean_exits = False


async def bind_carrier_sockets(host: str, port: int) -> tuple[trio.socket.SocketType, ...]:
    """Bind and listen on the carrier address (one socket per address ``host`` resolves to;
    only the first for port 0, whose sockets would each get a different port)."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    if port == 0:
        for extra in listeners[1:]:
            await extra.aclose()
        listeners = listeners[:1]
    return tuple(listener.socket for listener in listeners)


async def run_workers(settings: Settings, *, log_level: str = "INFO") -> int:
    """Run ``settings.listen.workers`` worker processes until signalled; returns the exit
    status."""
    workers = settings.listen.workers
    host, port = settings.listen.address
    admin_host, admin_port = settings.listen.admin_address
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        sockets = await bind_carrier_sockets(host, port)
        bound_port = sockets[0].getsockname()[1]
        metrics = ParentMetrics.create()
        metrics.configured.set(workers)
        pool = WorkerPool(
            settings,
            sockets,
            [WorkerSlot(i) for i in range(workers)],
            metrics,
            log_level=log_level,
        )
        pool.health.set_not_ready("starting")
        async with trio.open_nursery() as nursery:
            admin = await nursery.start(
                functools.partial(
                    serve_admin,
                    admin_host,
                    admin_port,
                    metrics=metrics,
                    health=pool.health,
                    refresh_metrics=pool.refresh_metrics,
                )
            )
            log_event(
                logger,
                "listening",
                url=f"{'wss' if settings.tls.cert_path else 'ws'}://{_hostport(host, bound_port)}",
                admin_url=f"http://{_hostport(admin[0], admin[1])}",
                workers=workers,
                pid=os.getpid(),
            )
            nursery.start_soon(pool.run_probes)

            async def watch_signals() -> None:
                count = 0
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        pool.forward_signal(signal.SIGHUP)
                        continue
                    count += 1
                    log_event(logger, "signal", signal=signal.Signals(signum).name, count=count)
                    if count == 1:
                        await pool.drain()
                        nursery.start_soon(deadline)
                    else:
                        await pool.stop_all()

            async def deadline() -> None:
                await trio.sleep(settings.listen.drain_timeout + KILL_GRACE)
                pool.kill_all()

            nursery.start_soon(watch_signals)
            async with trio.open_nursery() as slots:
                for slot in pool.slots:
                    slots.start_soon(pool.run_slot, slot)
            nursery.cancel_scope.cancel()
    log_event(logger, "stopped", clean=pool.clean_exits)
    return 0 if pool.clean_exits else 1


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
