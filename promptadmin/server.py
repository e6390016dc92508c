"""Run the prompt admin: hypercorn's trio worker serving :func:`promptadmin.app.build_app`.

Its own process, with its own write-capable AWS credentials
(``aws/s3-prompt-admin-policy.json``); the daemon keeps its read-only ones. The bucket,
prefix, region and size limit are the daemon's variables; ``ADMIN_TOKENS``,
``ADMIN_AUDIT_LOG``, ``NOVAVOICE_DAEMONS`` and ``DAEMON_ADMIN_TOKEN`` are the admin's
(:mod:`promptadmin.settings`).

Fail closed: beyond loopback it refuses to start without ``ADMIN_TOKENS``. On loopback
without tokens it makes up one for the admin ``local`` and prints it once, so a developer
can log in; every route still needs it. Serving over TLS (``--certfile``/``--keyfile``)
makes the session cookie ``Secure``.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import attrs
import httpx
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from actors.errors import ConfigError
from promptadmin.app import build_app
from promptadmin.async_versions import AsyncPromptVersions
from promptadmin.audit import AuditLog
from promptadmin.auth import AdminTokens
from promptadmin.context import AdminContext
from promptadmin.metrics import AdminMetrics
from promptadmin.notify import DaemonNotifier
from promptadmin.service import AdminService
from promptadmin.settings import (
    AdminSettings,
    check_fail_closed,
    load_admin_settings,
)
from promptadmin.versions import make_prompt_versions
from sessions.config import Settings, load_settings
from sessions.config_values import host_port
from sessions.logs import configure_logging, log_event

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
else:
    S3Client = Any

logger = logging.getLogger("novavoice.promptadmin")


@attrs.frozen
class RunningAdmin:
    """A running admin: its base URL and its parts."""

    url: str
    ctx: AdminContext


@asynccontextmanager
async def open_admin(
    settings: Settings,
    admin: AdminSettings,
    *,
    listen: tuple[str, int],
    s3_client: S3Client | None = None,
    s3_limiter: trio.CapacityLimiter | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
) -> AsyncIterator[RunningAdmin]:
    """Serve the admin on ``listen`` for the duration of the block.

    Raises :class:`~actors.errors.ConfigError` beyond loopback without tokens, and
    :class:`~actors.errors.VersioningDisabled` when the bucket keeps no versions.
    """
    host, port = listen
    check_fail_closed(host, admin)
    store = make_prompt_versions(settings, client=s3_client)
    versions = AsyncPromptVersions(
        store, s3_limiter or trio.CapacityLimiter(settings.prompts.s3_max_connections)
    )
    await versions.check_versioning()
    audit = AuditLog(admin.audit_log)
    try:
        audit.check_writable()
    except OSError as exc:
        raise ConfigError(f"ADMIN_AUDIT_LOG={admin.audit_log}: cannot append ({exc})") from None
    metrics = AdminMetrics()
    async with httpx.AsyncClient() as http, trio.open_nursery() as nursery:
        notifier = DaemonNotifier(daemons=admin.daemons, token=admin.daemon_token, client=http)
        ctx = AdminContext(
            versions=versions,
            service=AdminService(versions, audit, metrics, notifier),
            metrics=metrics,
            tokens=AdminTokens(admin.tokens),
        )
        config = Config()
        config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
        config.accesslog = None
        config.errorlog = logging.getLogger("novavoice.promptadmin.hypercorn")
        if certfile is not None:
            config.certfile, config.keyfile = certfile, keyfile
        binds: list[str] = await nursery.start(serve, build_app(ctx), config)
        running = RunningAdmin(url=binds[0], ctx=ctx)
        log_event(logger, "admin_listening", url=running.url, daemons=len(admin.daemons))
        try:
            yield running
        finally:
            nursery.cancel_scope.cancel(reason="admin stopped")


def main(args: argparse.Namespace) -> int:
    """Run the admin until interrupted."""
    settings = load_settings()
    admin = load_admin_settings()
    try:
        listen = host_port(args.listen)
    except ValueError as exc:
        raise ConfigError(f"--listen={args.listen!r}: {exc}") from None
    check_fail_closed(listen[0], admin)
    configure_logging(logging.INFO)  # after the checks: a refusal is one line, nothing else
    if not admin.tokens:
        token = secrets.token_urlsafe(24)
        admin = attrs.evolve(admin, tokens={"local": token})
        print(
            f"ADMIN_TOKENS is not set: log in on loopback as 'local' with {token}", file=sys.stderr
        )

    async def run() -> None:
        async with open_admin(
            settings, admin, listen=listen, certfile=args.certfile, keyfile=args.keyfile
        ) as running:
            print(f"prompt admin: {running.url}/api/v1/prompts/admin", file=sys.stderr)
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    log_event(logger, "signal", signal=signal.Signals(signum).name)
                    break

    try:
        trio.run(run)
    except KeyboardInterrupt:
        return 0
    return 0
