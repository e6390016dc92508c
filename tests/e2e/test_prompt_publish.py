"""End to end: publish a new version through the admin's API while a call is running.

The daemon (moto's S3 server, the Nova Sonic emulator, simulated Twilio calls) is told to
refresh by the admin; the next call loads the new version, and the call already running
keeps the version it started with for all of its turns. The new version carries an
emulator directive that doubles the reply length, so the difference is audible in the
frames each caller receives, not only in the logged versions.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
import httpx
import trio

from actors.s3_prompt_store import make_s3_client
from devkit.emulator.server import Emulator
from devkit.local_s3 import LocalS3
from devkit.simcall import CallReport, CallScript, run_simulated_call
from promptadmin.server import open_admin
from promptadmin.settings import AdminSettings
from sessions.config import Settings
from sessions.logs import CallContextFilter
from sessions.serve import open_daemon
from tests.e2e.conftest import daemon_overrides, daemon_settings

REPLY_FRAMES = 50  # replies of 1.0 s: 50 frames of 20 ms
DAEMON_TOKEN = "e2e-daemon-refresh-token"
ADMIN_TOKEN = "e2e-admin-token-0123456789"


class PromptLog(logging.Handler):
    """Keeps each call's ``call_prompt`` and ``call_ended`` records (with the call fields)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.addFilter(CallContextFilter())
        self.records: list[dict[str, Any]] = []
        self.first_load = trio.Event()  # the daemon logs from the trio thread

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "event", None)
        if event in ("call_prompt", "call_ended"):
            self.records.append(dict(vars(record)))
        if event == "call_prompt":
            self.first_load.set()

    def loaded(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["event"] == "call_prompt"]

    def ended(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["event"] == "call_ended"]


async def test_publish_during_a_call_reaches_the_next_call_only(
    emulator: Emulator, local_s3: LocalS3, tmp_path: Any
) -> None:
    log = PromptLog()
    watched = [logging.getLogger("novavoice.call"), logging.getLogger("novavoice.supervisor")]
    for logger in watched:
        logger.addHandler(log)
        logger.setLevel(logging.INFO)
    s3 = make_s3_client(
        region="us-east-1",
        max_connections=2,
        endpoint_url=local_s3.endpoint_url,
        static_credentials=("local", "local"),
    )
    live = s3.get_object(Bucket="nova-sonic-prompts", Key="assistants/esther.md")
    old_text = live["Body"].read().decode()
    new_text = old_text + "\n[emulator:reply-seconds=2.0]\n"
    long_call = CallScript(length=None, max_turns=3, utterance_seconds=(0.6, 0.6))
    one_turn = CallScript(length=None, max_turns=1, utterance_seconds=(0.6, 0.6))
    reports: dict[str, CallReport] = {}
    try:
        settings = daemon_settings(listen={"admin_token": DAEMON_TOKEN})
        with trio.fail_after(90):
            async with (
                open_daemon(settings, daemon_overrides(emulator, local_s3)) as daemon,
                open_admin(
                    Settings(),
                    AdminSettings(
                        tokens={"dora": ADMIN_TOKEN},
                        audit_log=tmp_path / "audit.log",
                        daemons=(daemon.admin_url,),
                        daemon_token=DAEMON_TOKEN,
                    ),
                    listen=("127.0.0.1", 0),
                    s3_client=s3,
                ) as admin,
                httpx.AsyncClient(
                    base_url=admin.url, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
                ) as api,
                trio.open_nursery() as nursery,
            ):

                async def place(label: str, script: CallScript) -> None:
                    reports[label] = await run_simulated_call(
                        daemon.url, assistant="esther", script=script, label=label
                    )

                nursery.start_soon(place, "running", long_call)
                await log.first_load.wait()  # the running call has its prompt
                current = await api.get("/api/v1/prompts/esther")
                published = await api.put(
                    "/api/v1/prompts/esther",
                    json={"text": new_text, "message": "longer answers"},
                    headers={"if-match": current.headers["etag"]},
                )
                assert daemon.supervisor.active_calls == 1  # still talking
                await place("next", one_turn)
    finally:
        for logger in watched:
            logger.removeHandler(log)

    assert published.status_code == 200, published.text
    body = published.json()
    assert body["daemons"] == [{"daemon": daemon.admin_url, "confirmed": True, "detail": "dropped"}]
    old_version, new_version = current.json()["version"], body["version"]
    assert old_version != new_version
    loads = [r["version_id"] for r in log.loaded()]
    assert loads == [old_version, new_version]
    by_version = {r["prompt_version"]: r for r in log.ended()}
    assert set(by_version) == {old_version, new_version}
    running, following = reports["running"], reports["next"]
    assert running.outcome == following.outcome == "completed"
    # The running call kept its version for all three turns: 1-second answers throughout.
    assert running.responses == 3 and running.frames_received == 3 * REPLY_FRAMES
    # The next call got the new version: its answer is twice as long.
    assert following.responses == 1 and following.frames_received == 2 * REPLY_FRAMES
    assert attrs.asdict(running)["label"] == "running"
