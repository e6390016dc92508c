"""Fixtures for the prompt admin: moto's in-process S3 with a versioned bucket, the ASGI
app driven through httpx's in-process transport, and login helpers.

boto3 runs in worker threads under a CapacityLimiter(1) (moto's in-process backend is not
thread-safe), on the real clock (worker threads and the autojump clock do not mix).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from moto import mock_aws

from actors.s3_prompt_store import make_s3_client
from promptadmin.app import build_app
from promptadmin.async_versions import AsyncPromptVersions
from promptadmin.audit import AuditLog
from promptadmin.auth import AdminTokens
from promptadmin.context import AdminContext
from promptadmin.metrics import AdminMetrics
from promptadmin.notify import DaemonNotifier
from promptadmin.service import AdminService
from promptadmin.versions import PromptVersions

BUCKET = "nova-sonic-prompts"
PREFIX = "assistants/"
ALICE = "alice-token-0123456789"
BOB = "bob-token-0123456789ab"
TOKENS = {"alice": ALICE, "bob": BOB}
BASE = "http://admin.test"

ESTHER_V1 = "---\nvoice: tiffany\n---\nYou are Esther, the receptionist of the Lindenhof.\n"


def auth(token: str = ALICE) -> dict[str, str]:
    """The bearer header for ``token``."""
    return {"authorization": f"Bearer {token}"}


@pytest.fixture
def aws(aws_env: None) -> Iterator[None]:
    """moto in-process, with the suite's fake credentials: nothing reaches a real account."""
    with mock_aws():
        yield


@pytest.fixture
def store(aws: None) -> PromptVersions:
    """A versioned bucket holding ``esther`` (one version, written by hand)."""
    client = make_s3_client(region="us-east-1", max_connections=2)
    client.create_bucket(Bucket=BUCKET)
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    client.put_object(Bucket=BUCKET, Key=f"{PREFIX}esther.md", Body=ESTHER_V1.encode())
    return PromptVersions(client=client, bucket=BUCKET, prefix=PREFIX, max_bytes=64 * 1024)


@attrs.define
class Admin:
    """The app under test, its parts and an in-process HTTP client."""

    client: httpx.AsyncClient
    ctx: AdminContext
    store: PromptVersions
    audit: AuditLog

    def versions_in_s3(self, name: str) -> int:
        """How many versions S3 holds for ``name`` (straight from the bucket)."""
        listed = self.store.client.list_object_versions(Bucket=BUCKET, Prefix=f"{PREFIX}{name}.md")
        return len(listed.get("Versions", []))

    async def login(self, token: str = ALICE) -> str:
        """Log the client in through the form; returns the session's CSRF token."""
        page = await self.client.get("/api/v1/prompts/admin/login")
        csrf = csrf_of(page.text)
        reply = await self.client.post(
            "/api/v1/prompts/admin/login", data={"token": token, "csrf_token": csrf}
        )
        assert reply.status_code == 303, reply.text
        home = await self.client.get("/api/v1/prompts/admin")
        assert home.status_code == 200
        return csrf_of(home.text)


def csrf_of(html: str) -> str:
    """The CSRF token a rendered page carries."""
    marker = '<meta name="csrf-token" content="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


@pytest.fixture
async def admin(store: PromptVersions, tmp_path: Path) -> AsyncIterator[Admin]:
    """The admin app over the moto bucket; no daemons to notify."""
    async with open_test_admin(store, tmp_path) as a:
        yield a


def make_context(
    store: PromptVersions, audit: AuditLog, http: httpx.AsyncClient, **notifier: Any
) -> AdminContext:
    """An :class:`AdminContext` over ``store``."""
    limiter = notifier.get("limiter") or trio.CapacityLimiter(1)
    versions = AsyncPromptVersions(store, limiter)
    metrics = AdminMetrics()
    daemons = DaemonNotifier(
        daemons=notifier.get("daemons", ()), token=notifier.get("token"), client=http
    )
    return AdminContext(
        versions=versions,
        service=AdminService(versions, audit, metrics, daemons),
        metrics=metrics,
        tokens=AdminTokens(TOKENS),
    )


@asynccontextmanager
async def open_test_admin(
    store: PromptVersions, tmp_path: Path, **notifier: Any
) -> AsyncIterator[Admin]:
    """The app in process: httpx's ASGI transport, no sockets (but for daemons)."""
    audit = AuditLog(tmp_path / "audit.log")
    async with httpx.AsyncClient() as outbound:
        ctx = make_context(store, audit, outbound, **notifier)
        transport = httpx.ASGITransport(app=build_app(ctx))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            yield Admin(client=client, ctx=ctx, store=store, audit=audit)
