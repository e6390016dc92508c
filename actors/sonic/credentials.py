"""AWS credentials for Sonic streams, from botocore's standard chain.

botocore resolves the usual sources (environment, shared config and credentials files,
SSO, web identity, container role, EC2 IMDS). Resolving may block on the network (IMDS,
SSO, STS), so it always runs in a worker thread. :class:`BotocoreCredentialsProvider`
caches the result and resolves again shortly before temporary credentials expire.

A stream is signed with one set of credentials for its whole life: rotating keys in the
middle of a stream breaks its signature chain (reference ``nova-sonic.md`` §1.3), so the
client asks the provider once per stream and exposes the expiry on the stream, letting the
caller rotate the stream itself in time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import botocore.exceptions
import botocore.session
import trio

from actors.errors import SigningError
from actors.sonic.signing import Credentials

__all__ = [
    "BotocoreCredentialsProvider",
    "CredentialsProvider",
    "StaticCredentialsProvider",
    "credentials_from_botocore",
]


class CredentialsProvider(Protocol):
    """Anything that can hand out the credentials to sign a new stream with."""

    async def get_credentials(self) -> Credentials:
        """Credentials valid for a new stream (not about to expire)."""
        ...


class StaticCredentialsProvider:
    """Always the same credentials (tests, the emulator, explicitly configured keys)."""

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials

    async def get_credentials(self) -> Credentials:
        """Return the configured credentials."""
        await trio.lowlevel.checkpoint()
        return self._credentials


def credentials_from_botocore(source: Any) -> Credentials:
    """Freeze a botocore ``Credentials``/``RefreshableCredentials`` into ours.

    ``get_frozen_credentials()`` refreshes first when botocore thinks it must, and returns
    a consistent key/secret/token triple. botocore keeps the expiry of refreshable
    credentials only in ``_expiry_time`` (no public accessor exists in botocore 1.x); it is
    read right after freezing, from the same object, so it belongs to the frozen triple.
    Blocking: call it in a worker thread.
    """
    frozen = source.get_frozen_credentials()
    expiry = getattr(source, "_expiry_time", None)
    if isinstance(expiry, datetime):
        expiry = expiry.astimezone(UTC) if expiry.tzinfo else expiry.replace(tzinfo=UTC)
    else:
        expiry = None
    return Credentials(
        access_key_id=frozen.access_key,
        secret_access_key=frozen.secret_key,
        session_token=frozen.token or None,
        expiry=expiry,
    )


def _resolve_blocking(session_factory: Callable[[], Any]) -> Credentials:
    session = session_factory()
    source = session.get_credentials()
    if source is None:
        raise SigningError(
            "no AWS credentials found (botocore's chain: environment, shared files, SSO, "
            "container role, IMDS)"
        )
    return credentials_from_botocore(source)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class BotocoreCredentialsProvider:
    """Credentials from botocore's default chain, cached and re-resolved before expiry.

    ``refresh_margin`` is how long before expiry cached credentials stop being handed to
    new streams; it should exceed the longest stream you plan to keep (Nova Sonic caps a
    stream at 8 minutes), so a stream never outlives its keys, and stay within botocore's
    own advisory refresh window (15 minutes), so that resolving again really yields new
    keys. If the chain still returns keys inside the margin (a source that cannot refresh),
    they are used, and the chain is asked again at most every ``retry_interval`` seconds.
    Concurrent callers share one resolution. ``session_factory`` builds the botocore
    session (in the worker thread); ``now`` is the wall clock (expiry is wall time).
    """

    def __init__(
        self,
        *,
        session_factory: Callable[[], Any] = botocore.session.Session,
        refresh_margin: timedelta = timedelta(minutes=10),
        retry_interval: float = 30.0,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._session_factory = session_factory
        self._session: Any = None
        self._refresh_margin = refresh_margin
        self._now = now
        self._retry_interval = retry_interval
        self._resolved_at = -math.inf
        self._came_stale = False
        self._cached: Credentials | None = None
        self._lock = trio.Lock()
        self.resolutions = 0
        """How many times the chain was consulted (for metrics and tests)."""

    def _fresh(self, credentials: Credentials | None) -> bool:
        if credentials is None:
            return False
        if credentials.expiry is None:
            return True
        now = self._now()
        if now < credentials.expiry - self._refresh_margin:
            return True
        # The chain already handed us these keys inside the margin: do not ask it again on
        # every stream; they remain usable until they really expire.
        recently = trio.current_time() - self._resolved_at < self._retry_interval
        return self._came_stale and recently and now < credentials.expiry

    async def get_credentials(self) -> Credentials:
        """Cached credentials, or resolve them in a worker thread (one resolution at a time).

        Raises :class:`~actors.errors.SigningError` when the chain has none or fails.
        """
        if self._fresh(self._cached):
            await trio.lowlevel.checkpoint()
            assert self._cached is not None
            return self._cached
        async with self._lock:
            if self._fresh(self._cached):
                assert self._cached is not None
                return self._cached
            try:
                credentials = await trio.to_thread.run_sync(self._resolve)
            except botocore.exceptions.BotoCoreError as exc:
                raise SigningError(f"resolving AWS credentials failed: {exc}") from exc
            self.resolutions += 1
            self._resolved_at = trio.current_time()
            self._came_stale = False
            self._came_stale = not self._fresh(credentials)
            self._cached = credentials
            return credentials

    def _resolve(self) -> Credentials:
        # The session is built once (it reads config files) and reused, so botocore's own
        # refreshable credentials object carries over between resolutions.
        if self._session is None:
            self._session = self._session_factory()
        return _resolve_blocking(lambda: self._session)
