"""The admin's JSON API against moto's versioned bucket, through the ASGI app in process."""

from __future__ import annotations

import difflib
import logging
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from promptadmin.api import api_routes
from promptadmin.openapi import openapi_document
from sessions import cli

from .conftest import ALICE, BOB, ESTHER_V1, Admin, auth

ESTHER_V2 = ESTHER_V1.replace("Lindenhof", "Lindenhof hotel, open all night")


def counter(admin: Admin, name: str) -> float:
    text = generate_latest(admin.ctx.metrics.registry).decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{name}_total":
                return float(sample.value)
    raise AssertionError(f"no metric {name}")


async def test_push_history_diff_rollback(admin: Admin) -> None:
    c = admin.client
    current = await c.get("/api/v1/prompts/esther", headers=auth())
    assert current.status_code == 200
    first = current.json()
    assert first["text"] == ESTHER_V1
    assert first["front_matter"] == {"voice": "tiffany"}
    assert current.headers["etag"] == first["etag"]

    pushed = await c.put(
        "/api/v1/prompts/esther",
        json={"text": ESTHER_V2, "message": "mention the night desk"},
        headers={**auth(), "if-match": current.headers["etag"]},
    )
    assert pushed.status_code == 200, pushed.text
    published = pushed.json()
    assert published["action"] == "publish"
    assert published["previous"] == first["version"]
    assert published["author"] == "alice"
    assert published["daemons"] == [] and published["confirmed"] == 0

    history = (await c.get("/api/v1/prompts/esther/versions", headers=auth())).json()["versions"]
    assert [v["version"] for v in history] == [published["version"], first["version"]]
    assert history[0]["author"] == "alice" and history[0]["message"] == "mention the night desk"
    assert history[0]["is_latest"] and history[1]["author"] is None  # the hand-written one

    old = await c.get(f"/api/v1/prompts/esther/versions/{first['version']}", headers=auth())
    new = await c.get(f"/api/v1/prompts/esther/versions/{published['version']}", headers=auth())
    diff = list(
        difflib.unified_diff(
            old.json()["text"].splitlines(), new.json()["text"].splitlines(), lineterm=""
        )
    )
    assert "-You are Esther, the receptionist of the Lindenhof." in diff
    assert "+You are Esther, the receptionist of the Lindenhof hotel, open all night." in diff

    rolled = await c.post(
        "/api/v1/prompts/esther/rollback",
        json={"version": first["version"], "message": "night desk not staffed yet"},
        headers=auth(BOB),
    )
    assert rolled.status_code == 200, rolled.text
    back = rolled.json()
    assert back["action"] == "rollback" and back["rollback_of"] == first["version"]
    assert back["previous"] == published["version"]

    history = (await c.get("/api/v1/prompts/esther/versions", headers=auth())).json()["versions"]
    # History is never rewritten: the rollback is a third, new version.
    assert len(history) == 3
    assert history[0]["version"] == back["version"] not in (first["version"], published["version"])
    assert history[0]["author"] == "bob" and history[0]["rollback_of"] == first["version"]
    assert (await c.get("/api/v1/prompts/esther", headers=auth())).json()["text"] == ESTHER_V1

    assert [(e["who"], e["what"], e["version"], e["previous"]) for e in admin.audit.read()] == [
        ("alice", "publish", published["version"], first["version"]),
        ("bob", "rollback", back["version"], published["version"]),
    ]
    assert admin.audit.read()[1]["rollback_of"] == first["version"]
    assert admin.audit.path.stat().st_mode & 0o777 == 0o600
    assert counter(admin, "novavoice_admin_publishes") == 1
    assert counter(admin, "novavoice_admin_rollbacks") == 1


async def test_concurrent_edit_gets_412_and_nothing_is_lost(admin: Admin) -> None:
    c = admin.client
    etag = (await c.get("/api/v1/prompts/esther", headers=auth())).headers["etag"]
    alice = await c.put(
        "/api/v1/prompts/esther",
        json={"text": ESTHER_V2, "message": "alice's change"},
        headers={**auth(ALICE), "if-match": etag},
    )
    bob = await c.put(
        "/api/v1/prompts/esther",
        json={"text": ESTHER_V1 + "Bob's addition.\n", "message": "bob's change"},
        headers={**auth(BOB), "if-match": etag},
    )
    assert alice.status_code == 200
    assert bob.status_code == 412
    assert bob.json()["error"]["code"] == "conflict"
    assert bob.json()["expected"] == etag
    live = (await c.get("/api/v1/prompts/esther", headers=auth())).json()
    assert live["text"] == ESTHER_V2 and live["author"] == "alice"
    assert admin.versions_in_s3("esther") == 2
    assert counter(admin, "novavoice_admin_conflicts") == 1
    assert [e["who"] for e in admin.audit.read()] == ["alice"]


async def test_invalid_content_gets_422_with_the_report_and_nothing_is_written(
    admin: Admin,
) -> None:
    c = admin.client
    etag = (await c.get("/api/v1/prompts/esther", headers=auth())).headers["etag"]
    bad = "---\nvoice: tiffany\ncolour: blue\n---\nHello {{caller_name}}.\n"
    reply = await c.put(
        "/api/v1/prompts/esther",
        json={"text": bad, "message": "broken"},
        headers={**auth(), "if-match": etag},
    )
    assert reply.status_code == 422
    body = reply.json()
    assert body["error"]["code"] == "invalid_definition"
    issues = {(i["code"], i["line"], i["column"]) for i in body["report"]["issues"]}
    assert ("unknown_key", 3, 1) in issues
    assert any(code == "unfilled_placeholder" and line == 5 for code, line, _ in issues)
    assert admin.versions_in_s3("esther") == 1
    assert admin.audit.read() == []
    assert counter(admin, "novavoice_admin_validation_failures") == 1


async def test_validate_reports_only(admin: Admin) -> None:
    c = admin.client
    good = await c.post(
        "/api/v1/prompts/validate", json={"text": "---\nvoice: amy\n---\nHi.\n"}, headers=auth()
    )
    bad = await c.post("/api/v1/prompts/validate", json={"text": ""}, headers=auth())
    assert good.status_code == 200 and good.json()["ok"] is True
    assert good.json()["front_matter"] == {"voice": "amy"}
    assert bad.status_code == 200 and bad.json()["ok"] is False
    assert bad.json()["issues"][0]["code"] == "empty"
    assert admin.versions_in_s3("esther") == 1


async def test_new_assistant_needs_if_none_match_and_cannot_be_created_twice(
    admin: Admin,
) -> None:
    c = admin.client
    body = {"text": "You are a patient support agent.\n", "message": "first version"}
    missing = await c.put("/api/v1/prompts/support", json=body, headers=auth())
    assert missing.status_code == 428
    assert missing.json()["error"]["code"] == "precondition_required"
    created = await c.put(
        "/api/v1/prompts/support", json=body, headers={**auth(), "if-none-match": "*"}
    )
    assert created.status_code == 201 and created.json()["action"] == "create"
    assert created.json()["previous"] is None
    again = await c.put(
        "/api/v1/prompts/support", json=body, headers={**auth(BOB), "if-none-match": "*"}
    )
    assert again.status_code == 412
    listed = (await c.get("/api/v1/prompts", headers=auth())).json()["assistants"]
    assert [(a["name"], a["author"]) for a in listed] == [("esther", None), ("support", "alice")]
    assert all(a["version"] and a["size"] > 0 and a["updated"] for a in listed)


async def test_errors_are_json_with_a_code(admin: Admin) -> None:
    c = admin.client
    cases = {
        "/api/v1/prompts/nobody": (404, "not_found"),
        "/api/v1/prompts/esther/versions/not-a-version": (404, "version_not_found"),
        "/api/v1/prompts/Bad%20Name": (400, "invalid_name"),
    }
    for path, (status, code) in cases.items():
        reply = await c.get(path, headers=auth())
        assert (reply.status_code, reply.json()["error"]["code"]) == (status, code), path
    unrouted = await c.get("/api/v1/nothing-here", headers=auth())
    assert unrouted.status_code == 404 and unrouted.json()["error"]["code"] == "no_route"
    wrong_method = await c.delete("/api/v1/prompts/esther", headers=auth())
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
    garbled = await c.post("/api/v1/prompts/validate", content=b"{not json", headers=auth())
    assert garbled.status_code == 400 and garbled.json()["error"]["code"] == "bad_json"
    huge = await c.post(
        "/api/v1/prompts/validate",
        json={"text": "x" * (admin.ctx.body_limit + 1)},
        headers=auth(),
    )
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "too_large"


async def test_every_route_but_login_needs_an_admin(admin: Admin) -> None:
    c = admin.client
    requests = [
        ("GET", "/api/v1/prompts"),
        ("GET", "/api/v1/prompts/esther"),
        ("PUT", "/api/v1/prompts/esther"),
        ("POST", "/api/v1/prompts/validate"),
        ("GET", "/api/v1/prompts/esther/versions"),
        ("GET", "/api/v1/prompts/esther/versions/x"),
        ("POST", "/api/v1/prompts/esther/rollback"),
        ("GET", "/api/v1/openapi.json"),
        ("GET", "/metrics"),
        ("POST", "/api/v1/prompts/admin/review"),
        ("POST", "/api/v1/prompts/admin/publish"),
    ]
    for method, path in requests:
        for headers in ({}, {"authorization": "Bearer wrong-token-0123456789"}):
            reply = await c.request(method, path, headers=headers, json={"text": "x"})
            assert reply.status_code == 401, (method, path, headers)
            assert reply.json()["error"]["code"] == "unauthenticated"
            assert reply.headers["www-authenticate"].startswith("Bearer")
    page = await c.get("/api/v1/prompts/admin")
    assert page.status_code == 303
    assert page.headers["location"].endswith("/api/v1/prompts/admin/login")
    assert (await c.get("/api/v1/prompts/admin/login")).status_code == 200
    assert admin.versions_in_s3("esther") == 1


async def test_openapi_describes_every_api_route(admin: Admin) -> None:
    reply = await admin.client.get("/api/v1/openapi.json", headers=auth())
    assert reply.status_code == 200
    doc = reply.json()
    assert doc == openapi_document()
    described = {
        (path, method.upper())
        for path, item in doc["paths"].items()
        for method in item
        if method != "parameters"
    }
    routed = {
        (r.path, m)
        for r in api_routes()
        if r.path.startswith("/api/v1/prompts")
        for m in (r.methods or set()) - {"HEAD"}
    }
    assert described == routed


async def test_metrics_are_served_to_an_admin(admin: Admin) -> None:
    reply = await admin.client.get("/metrics", headers=auth())
    assert reply.status_code == 200
    assert "novavoice_admin_publishes_total 0.0" in reply.text


def test_novavoice_admin_refuses_to_serve_beyond_loopback_without_tokens(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.delenv("ADMIN_TOKENS", raising=False)
    root = logging.getLogger()
    handlers = list(root.handlers)
    status = cli.main(["admin", "--listen", "0.0.0.0:0"])
    assert root.handlers == handlers  # refused before touching logging
    err = capsys.readouterr().err
    assert status == 2
    assert "ADMIN_TOKENS is not set" in err
    assert len(err.strip().splitlines()) == 1
