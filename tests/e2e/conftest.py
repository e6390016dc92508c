"""End-to-end fixtures: moto's S3 server, the Nova Sonic emulator and the daemon, on loopback.

Everything binds 127.0.0.1 port 0 and runs on the real clock (real sockets and moto's
threads cannot use the autojump clock); the emulator's pauses are scaled down so a turn
takes about a second.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import attrs
import pytest

from actors.s3_prompt_store import make_s3_client
from actors.sonic.credentials import StaticCredentialsProvider
from actors.sonic.signing import Credentials
from devkit.emulator import EmulatorConfig, StreamPlan, open_emulator
from devkit.emulator.server import Emulator
from devkit.example_prompts import seed_example_prompts
from devkit.local_s3 import LocalS3, run_local_s3
from sessions.config import Settings
from sessions.serve import Daemon, DaemonOverrides, open_daemon

ACCESS_KEY = "AKIDE2ETEST"
SECRET_KEY = "e2e-secret-key-not-real"


def seed_prompts(s3: LocalS3) -> None:
    """Create the versioned prompts bucket and put the example prompts."""
    client = make_s3_client(
        region="us-east-1",
        max_connections=2,
        endpoint_url=s3.endpoint_url,
        static_credentials=("local", "local"),
    )
    seed_example_prompts(client, Settings())


@pytest.fixture
def local_s3() -> Iterator[LocalS3]:
    """A seeded moto S3 server for one test (tests may stop it: S3 outages)."""
    with run_local_s3() as s3:
        seed_prompts(s3)
        yield s3


def emulator_config(**plan: Any) -> EmulatorConfig:
    """Emulator with short pauses and replies (a turn is about a second)."""
    base = StreamPlan(time_to_first_audio=0.1, reply_seconds=1.0, audio_speed=4.0)
    return EmulatorConfig(
        credentials={ACCESS_KEY: SECRET_KEY},
        pause_scale=0.2,
        plan=attrs.evolve(base, **plan),
    )


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    """The Nova Sonic emulator on 127.0.0.1 for one test."""
    async with open_emulator(emulator_config()) as emu:
        yield emu


def daemon_settings(**sections: Mapping[str, Any]) -> Settings:
    """Daemon settings for tests: loopback, port 0, fast drain, no per-source cap;
    ``sections`` as in :meth:`Settings.replace` (``prompts={"cache_ttl": 0.2}``)."""
    base = Settings().replace(
        listen={
            "address": ("127.0.0.1", 0),
            "admin_address": ("127.0.0.1", 0),
            "drain_timeout": 2.0,
        },
        # Every test caller comes from 127.0.0.1: bursts of calls must not meet the
        # per-source cap (tests/e2e/test_source_limit.py sets its own).
        admission={"max_unstarted_per_source": 0},
    )
    return base.replace(**sections)


def daemon_overrides(emu: Emulator, s3: LocalS3) -> DaemonOverrides:
    """Point the daemon at the emulator and the local S3, with the test credentials."""
    return DaemonOverrides(
        sonic_endpoint_url=emu.url,
        sonic_ca_file=emu.ca_file,
        sonic_credentials=StaticCredentialsProvider(
            Credentials(access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY)
        ),
        s3_endpoint_url=s3.endpoint_url,
        s3_static_credentials=("local", "local"),
    )


@pytest.fixture
async def daemon(emulator: Emulator, local_s3: LocalS3) -> AsyncIterator[Daemon]:
    """The daemon wired to the emulator and the local S3, default settings."""
    async with open_daemon(daemon_settings(), daemon_overrides(emulator, local_s3)) as d:
        yield d


def put_prompt(s3: LocalS3, name: str, text: str) -> None:
    """Publish one more assistant definition into the seeded bucket."""
    settings = Settings()
    client = make_s3_client(
        region="us-east-1",
        max_connections=2,
        endpoint_url=s3.endpoint_url,
        static_credentials=("local", "local"),
    )
    client.put_object(
        Bucket=settings.prompts.bucket,
        Key=f"{settings.prompts.prefix}{name}.md",
        Body=text.encode(),
    )
