"""``novavoice serve``: the daemon.

Configured by the environment and ``.env`` (see ``.env.example``), and these flags. Carriers
connect to ``ws://LISTEN/twilio/<assistant>`` (Twilio Media Streams) or
``ws://LISTEN/asterisk/<assistant>`` (Asterisk chan_websocket). ``/healthz``, ``/readyz`` and
``/metrics`` are served on the admin address. Once listening, one JSON log line with
``"event": "listening"`` gives the bound ``url`` and ``admin_url``.

SIGTERM or SIGINT drains: readiness goes false, no new calls, running calls continue until
the drain deadline and then end politely. A second signal ends every call at once.

``--workers N`` (or ``NOVAVOICE_WORKERS``; ``auto`` is one per CPU core) with N > 1 runs N
worker processes sharing the carrier port behind a parent that serves the admin address,
restarts crashed workers and forwards the signals (``sessions/workers.py``). With
``METRICS_CLOUDWATCH_EMF=1`` the daemon (each worker) also writes CloudWatch EMF lines
(``sessions/emf_writer.py``).

The daemon refuses to listen on a non-loopback address with no carrier authentication
configured (TWILIO_AUTH_TOKEN, ASTERISK_BASIC_AUTH or ASTERISK_BEARER_TOKEN) unless
``--insecure`` is given.
"""

from __future__ import annotations

import argparse
import functools
import ipaddress
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import attrs
import trio

from actors.errors import ConfigError
from actors.prompt_cache import PromptCache, open_prompt_cache
from actors.prompt_fetch import PromptFetcher
from actors.s3_prompt_store import S3PromptStore, make_s3_client
from actors.sonic.credentials import CredentialsProvider
from actors.sonic.pool import open_sonic_client
from actors.sonic.session import SonicOpener
from sessions.admin import Health, serve_admin
from sessions.call_records import CallDeps
from sessions.config import Settings, load_settings
from sessions.config_values import host_port, log_level, workers
from sessions.emf import EmfFormatter, read_registry
from sessions.emf_writer import run_emf_writer
from sessions.logs import CallLog, configure_logging, log_event, open_call_log
from sessions.loop_lag import run_loop_lag_monitor
from sessions.metrics import Metrics
from sessions.supervisor import Supervisor, serve_calls
from sessions.workers import run_workers

logger = logging.getLogger("novavoice.serve")


@attrs.frozen(kw_only=True)
class DaemonOverrides:
    """What a caller may set beyond :class:`Settings` (the demo, tests, benchmarks)."""

    sonic_endpoint_url: str | None = None
    """Default: ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``, then Bedrock's regional endpoint."""
    sonic_ca_file: str | None = None
    """Default: ``AWS_CA_BUNDLE``, then the system's trust store."""
    sonic_credentials: CredentialsProvider | None = None
    """Default: botocore's standard credential chain."""
    s3_endpoint_url: str | None = None
    """Default: ``AWS_ENDPOINT_URL_S3`` (botocore applies it), then S3's endpoint."""
    s3_static_credentials: tuple[str, str] | None = None
    """For local S3 servers only; production uses the standard chain."""
    sonic_middleware: Callable[[SonicOpener], SonicOpener] | None = None
    """Wraps the Sonic client every call uses (instrumentation; fault injection in tests)."""
    carrier_sockets: tuple[socket.socket, ...] | None = None
    """Listening sockets to accept carriers on, instead of binding ``Settings.listen``
    (a worker process inherits them from its parent: :mod:`sessions.workers`)."""


@attrs.frozen(kw_only=True)
class Daemon:
    """A running daemon: where it listens and its parts (for the demo and tests)."""

    url: str
    admin_url: str
    supervisor: Supervisor
    metrics: Metrics
    health: Health
    prompt_cache: PromptCache
    call_log: CallLog
    """The opt-in transcript log; SIGHUP reopens it (logrotate)."""


def check_listen_security(host: str, settings: Settings, *, insecure: bool) -> None:
    """Refuse a non-loopback listener without carrier authentication unless ``insecure``."""
    if insecure or settings.admission.authentication_configured:
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ConfigError(
            f"NOVAVOICE_LISTEN={host}: refusing to listen beyond loopback with no carrier "
            "authentication (set TWILIO_AUTH_TOKEN or ASTERISK_BASIC_AUTH/ASTERISK_BEARER_TOKEN,"
            " or pass --insecure)"
        )


@asynccontextmanager
async def open_daemon(
    settings: Settings, overrides: DaemonOverrides | None = None, *, insecure: bool = False
) -> AsyncIterator[Daemon]:
    """Run the whole daemon for the duration of the block.

    Leaving the block ends every call at once (politely); use
    ``daemon.supervisor.drain(deadline)`` first for a graceful stop.
    """
    ov = overrides or DaemonOverrides()
    host, port = settings.listen.address
    admin_host, admin_port = settings.listen.admin_address
    prompts, sonic_settings = settings.prompts, settings.sonic
    budget = prompts.budget  # every prompt-path deadline derives from this one budget
    check_listen_security(host, settings, insecure=insecure)
    metrics = Metrics()
    health = Health()
    # Built once, in the trio thread: creating boto3 clients concurrently is not safe.
    s3 = make_s3_client(
        region=settings.aws_region,
        max_connections=prompts.s3_max_connections,
        endpoint_url=ov.s3_endpoint_url,
        static_credentials=ov.s3_static_credentials,
        budget=budget,
    )
    store = S3PromptStore(
        client=s3,
        bucket=prompts.bucket,
        prefix=prompts.prefix,
        limiter=trio.CapacityLimiter(prompts.s3_max_connections),
        max_bytes=prompts.max_bytes,
    )
    async with (
        open_call_log(
            settings.logging.call_log_path,
            on_drop=functools.partial(metrics.queue_dropped, "call_log"),
        ) as call_log,
        open_prompt_cache(
            store,
            ttl=prompts.cache_ttl,
            stale_if_error=prompts.stale_if_error,
            negative_ttl=prompts.negative_ttl,
            max_entries=prompts.cache_max_entries,
            fetch_timeout=budget.cache_fetch_timeout,
            refresh_retry_interval=prompts.refresh_retry_interval,
        ) as cache,
        open_sonic_client(
            region=settings.aws_region,
            model_id=sonic_settings.model_id,
            endpoint_url=ov.sonic_endpoint_url,
            ca_file=ov.sonic_ca_file,
            credentials_provider=ov.sonic_credentials,
            max_connections=sonic_settings.max_connections,
            max_streams_per_connection=sonic_settings.streams_per_connection,
            connect_timeout=sonic_settings.connect_timeout,
            first_response_timeout=sonic_settings.first_response_timeout,
        ) as sonic,
        trio.open_nursery() as nursery,
    ):
        metrics.watch_prompt_cache(cache)
        deps = CallDeps(
            prompts=PromptFetcher(cache, budget.call_timeout),
            sonic=ov.sonic_middleware(sonic) if ov.sonic_middleware else sonic,
            metrics=metrics,
            call_log=call_log,
            settings=settings.calls,
        )
        bound_admin = await nursery.start(
            functools.partial(
                serve_admin,
                admin_host,
                admin_port,
                metrics=metrics,
                health=health,
                prompts=cache,
                refresh_token=settings.listen.admin_token,
            )
        )
        nursery.start_soon(run_loop_lag_monitor, metrics, 0.25)
        if settings.metrics.cloudwatch_emf:
            await nursery.start(
                functools.partial(
                    run_emf_writer,
                    functools.partial(read_registry, metrics.registry),
                    interval=settings.metrics.cloudwatch_emf_interval,
                    path=settings.metrics.cloudwatch_emf_path,
                    formatter=EmfFormatter(extra={"pid": os.getpid()}),
                )
            )
        supervisor, bound_port = await nursery.start(
            functools.partial(
                serve_calls,
                host,
                port,
                deps,
                admission=settings.admission,
                health=health,
                metrics=metrics,
                sockets=ov.carrier_sockets,
            )
        )
        daemon = Daemon(
            url=f"ws://{_hostport(host, bound_port)}",
            admin_url=f"http://{_hostport(bound_admin[0], bound_admin[1])}",
            supervisor=supervisor,
            metrics=metrics,
            health=health,
            prompt_cache=cache,
            call_log=call_log,
        )
        log_event(logger, "listening", url=daemon.url, admin_url=daemon.admin_url)
        try:
            yield daemon
        finally:
            supervisor.end_all_calls()
            # Let the cancelled calls finish closing (each cleanup step is bounded) so they
            # are counted before the EMF writer's last set and the other tasks stop.
            with trio.move_on_after(5.0, shield=True):
                await supervisor.wait_active_calls(lambda n: n == 0)
            nursery.cancel_scope.cancel(reason="daemon stopped")


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def run_until_signalled(settings: Settings, *, insecure: bool) -> None:
    """Run the daemon until SIGTERM/SIGINT; drain on the first signal, stop on the second.

    SIGHUP reopens the call log (after logrotate moved it) and changes nothing else.
    """
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with open_daemon(settings, insecure=insecure) as daemon, trio.open_nursery() as n:
            drained = trio.Event()

            async def drain() -> None:
                await daemon.supervisor.drain(settings.listen.drain_timeout)
                drained.set()

            async def watch_signals() -> None:
                count = 0
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        daemon.call_log.reopen()
                        log_event(logger, "call_log_reopen", path=daemon.call_log.path)
                        continue
                    count += 1
                    log_event(logger, "signal", signal=signal.Signals(signum).name, count=count)
                    if count == 1:
                        n.start_soon(drain)
                    else:
                        daemon.supervisor.end_all_calls()
                        drained.set()

            n.start_soon(watch_signals)
            await drained.wait()
            n.cancel_scope.cancel()
    log_event(logger, "stopped")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``novavoice serve`` (each overrides its environment variable)."""
    parser.add_argument("--listen", help="carrier WebSockets, HOST:PORT (NOVAVOICE_LISTEN)")
    parser.add_argument(
        "--admin-listen", help="health and metrics, HOST:PORT (NOVAVOICE_ADMIN_LISTEN)"
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback listener with no carrier authentication",
    )
    parser.add_argument(
        "--log-level", help="DEBUG, INFO, WARNING or ERROR (NOVAVOICE_LOG_LEVEL; default INFO)"
    )
    parser.add_argument(
        "--workers",
        help="worker processes, a count or 'auto' for one per CPU core (NOVAVOICE_WORKERS); "
        "more than one runs a parent process: see sessions/workers.py",
    )


def main(args: argparse.Namespace) -> int:
    """Run the daemon until signalled; exit status 0 after a clean drain."""
    settings = load_settings()
    listen: dict[str, object] = {}
    try:
        if args.listen:
            listen["address"] = host_port(args.listen)
        if args.admin_listen:
            listen["admin_address"] = host_port(args.admin_listen)
        if args.workers:
            listen["workers"] = workers(args.workers)
        level = log_level(args.log_level) if args.log_level else settings.logging.level
    except ValueError as exc:
        raise ConfigError(f"--listen/--admin-listen/--log-level/--workers: {exc}") from None
    settings = settings.replace(listen=listen)
    configure_logging(level)
    if settings.listen.workers > 1:
        check_listen_security(settings.listen.address[0], settings, insecure=args.insecure)
        return trio.run(functools.partial(run_workers, settings, log_level=level))
    trio.run(functools.partial(run_until_signalled, settings, insecure=args.insecure))
    return 0
