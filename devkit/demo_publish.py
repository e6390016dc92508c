"""The demo's prompt-admin act: publish a new version of an assistant while the daemon
runs, see the next call use it, then roll back and see the next call use that.

Runs the real prompt admin (``novavoice admin``: hypercorn, its JSON API) against the
demo's local S3, told to refresh the demo's daemon after each write.
"""

from __future__ import annotations

import logging
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from devkit.simcall import CallScript, run_simulated_call
from sessions.config import Settings
from sessions.serve import Daemon

Print = Callable[[str], None]
ASSISTANT = "support-agent"
ADDITION = "\nOpening hours are 8:00 to 18:00 on weekdays; say so when asked.\n"


async def publish_and_roll_back(
    daemon: Daemon,
    settings: Settings,
    s3_client: Any,
    records: list[dict[str, Any]],
    out: Print,
) -> dict[str, bool]:
    """Publish, call, roll back, call; print each step; return the checks."""
    from promptadmin.server import open_admin  # the admin extra; the daemon never needs it
    from promptadmin.settings import AdminSettings

    token = secrets.token_urlsafe(24)
    audit = Path(tempfile.gettempdir()) / "novavoice-demo-audit.log"
    audit.unlink(missing_ok=True)
    admin_settings = AdminSettings(
        tokens={"demo-admin": token},
        audit_log=audit,
        daemons=(daemon.admin_url,),
        daemon_token=settings.listen.admin_token,
    )
    script = CallScript(length=None, max_turns=1, utterance_seconds=(0.8, 1.0))

    async def call(seed: int) -> str:
        records.clear()
        await run_simulated_call(daemon.url, assistant=ASSISTANT, script=script, seed=seed)
        await daemon.supervisor.wait_active_calls(lambda n: n == 0)
        return str(records[-1].get("prompt_version")) if records else "-"

    # Quiet the admin's server log in the demo's console (it still goes to the JSON log).
    logging.getLogger("novavoice.promptadmin.hypercorn").setLevel(logging.WARNING)
    async with (
        open_admin(settings, admin_settings, listen=("127.0.0.1", 0), s3_client=s3_client) as a,
        httpx.AsyncClient(base_url=a.url, headers={"authorization": f"Bearer {token}"}) as api,
    ):
        out(f"\n== the prompt admin ({a.url}/api/v1/prompts/admin) publishes {ASSISTANT}")
        live = await api.get(f"/api/v1/prompts/{ASSISTANT}")
        before = live.json()["version"]
        put = await api.put(
            f"/api/v1/prompts/{ASSISTANT}",
            json={"text": live.json()["text"] + ADDITION, "message": "add opening hours"},
            headers={"if-match": live.headers["etag"]},
        )
        published = put.json()
        _show_write(out, "published", put.status_code, published)
        after_publish = await call(seed=300)
        out(f"  next call used version {after_publish}")

        out(f"\n== roll {ASSISTANT} back to {before}")
        post = await api.post(
            f"/api/v1/prompts/{ASSISTANT}/rollback",
            json={"version": before, "message": "opening hours not confirmed yet"},
        )
        rolled = post.json()
        _show_write(out, "rolled back", post.status_code, rolled)
        after_rollback = await call(seed=301)
        out(f"  next call used version {after_rollback}")
        history = (await api.get(f"/api/v1/prompts/{ASSISTANT}/versions")).json()["versions"]
        out(f"  history: {len(history)} versions, newest first:")
        for v in history:
            note = f" (copy of {v['rollback_of']})" if v["rollback_of"] else ""
            out(f"    {v['version']}  {v['author'] or '-':<11} {v['message'] or ''}{note}")
    out(f"  audit log: {audit}")
    confirmed = [d["confirmed"] for d in published.get("daemons", []) + rolled.get("daemons", [])]
    return {
        "the publish and the rollback were both confirmed by the daemon": confirmed == [True, True],
        "the call after the publish used the published version": after_publish
        == published.get("version"),
        "the rollback is a new version, and the next call used it": after_rollback
        == rolled.get("version")
        and rolled.get("rollback_of") == before
        and rolled.get("version") not in (before, published.get("version")),
        "history kept every version (the rollback rewrote nothing)": [
            v["version"] for v in history[:3]
        ]
        == [rolled.get("version"), published.get("version"), before],
    }


def _show_write(out: Print, what: str, status: int, body: dict[str, Any]) -> None:
    if status != 200:
        out(f"  FAILED: HTTP {status}: {body.get('error')}")
        return
    out(f"  {what}: version {body['version']} (was {body['previous']}) by {body['author']}")
    for d in body["daemons"]:
        state = "confirmed" if d["confirmed"] else "did NOT confirm"
        out(f"  daemon {d['daemon']} {state} the refresh ({d['detail']})")
