"""Structured logs: one JSON object per line, call context everywhere, redaction guard."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing

import sessions.logs
from sessions.logs import (
    CallContextFilter,
    JsonFormatter,
    bind_call,
    current_call,
    log_event,
    open_call_log,
    refused_fields,
)


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger wired exactly like the service log, writing into a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.addFilter(CallContextFilter())
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("tests.ops.logs")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    try:
        yield log, buffer
    finally:
        log.removeHandler(handler)


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    """Each line parsed alone: fails if any line is not exactly one JSON object."""
    out = []
    for line in buffer.getvalue().split("\n")[:-1]:
        obj = json.loads(line)
        assert isinstance(obj, dict)
        out.append(obj)
    return out


def test_every_line_is_one_json_object(captured: tuple[logging.Logger, io.StringIO]) -> None:
    log, buffer = captured
    log.info("plain message")
    log.warning("multi\nline\u2028message with %s", "args")
    try:
        raise ValueError("inner\nproblem")
    except ValueError:
        log.exception("failed")
    log_event(log, "listening", url="ws://127.0.0.1:1", admin_url="http://127.0.0.1:2")
    log.info("odd value", extra={"thing": object()})
    records = lines(buffer)
    assert len(records) == 5
    assert records[0]["event"] == "log"
    assert records[0]["level"] == "info"
    assert records[0]["ts"].endswith("+00:00")
    assert records[1]["message"] == "multi\nline\u2028message with args"
    assert "ValueError: inner" in records[2]["exc"]
    assert records[3]["event"] == "listening"
    assert records[3]["url"] == "ws://127.0.0.1:1"
    assert records[3]["admin_url"] == "http://127.0.0.1:2"
    assert records[4]["thing"].startswith("<object")


async def test_call_fields_on_every_line_including_child_tasks(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    log, buffer = captured

    async def pump(name: str) -> None:
        await trio.lowlevel.checkpoint()
        log.info("pump running", extra={"event": name})

    log.info("before")
    with bind_call("CA123", "twilio", assistant="esther") as ctx:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump, "audio_in")
            log.info("opened")
            # learnt after the children started: they must still see it
            ctx.update(prompt_version='"etag-1"')
            nursery.start_soon(pump, "audio_out")
    log.info("after")
    records = lines(buffer)
    assert "call_id" not in records[0]
    assert "call_id" not in records[-1]
    assert current_call() is None
    inside = records[1:-1]
    assert {r["event"] for r in inside} == {"log", "audio_in", "audio_out"}
    for r in inside:
        assert r["call_id"] == "CA123"
        assert r["carrier"] == "twilio"
        assert r["assistant"] == "esther"
    by_event = {r["event"]: r for r in inside}
    assert by_event["audio_in"]["prompt_version"] == '"etag-1"'
    assert by_event["audio_out"]["prompt_version"] == '"etag-1"'


async def test_two_calls_in_sibling_tasks_keep_their_own_fields(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    log, buffer = captured

    async def call(call_id: str) -> None:
        with bind_call(call_id, "asterisk"):
            for _ in range(3):
                await trio.lowlevel.checkpoint()
                log.info("tick", extra={"event": call_id})

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, "one")
        nursery.start_soon(call, "two")
    records = lines(buffer)
    assert len(records) == 6
    assert all(r["call_id"] == r["event"] for r in records)


def test_redaction_guard_refuses_content_fields(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    log, buffer = captured
    with bind_call("CA9", "twilio", prompt_version="v7"):
        log.info(
            "turn",
            extra={
                "event": "turn",
                "transcript": "my card number is 4111",
                "prompt_text": "You are Esther, SECRET",
                "audio": b"\x00\x01",
                "caller_text": ["hello"],
                "audio_ms": 640,
                "turns": 3,
            },
        )
    (record,) = lines(buffer)
    raw = buffer.getvalue()
    assert "4111" not in raw
    assert "SECRET" not in raw
    assert "hello" not in raw
    assert record["redacted"] == ["audio", "caller_text", "prompt_text", "transcript"]
    assert record["audio_ms"] == 640  # numbers cannot carry content
    assert record["turns"] == 3
    assert record["prompt_version"] == "v7"  # the allowed exception


def test_extra_fields_cannot_forge_the_envelope(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    log, buffer = captured
    with bind_call("CA5", "asterisk"):
        log.warning("x", extra={"level": "debug", "ts": "yesterday", "call_id": "CA6"})
    (record,) = lines(buffer)
    assert record["level"] == "warning"
    assert record["ts"] != "yesterday"
    assert record["call_id"] == "CA6"  # an explicit call id (the supervisor's) wins


def test_refused_fields_rule() -> None:
    assert refused_fields({"prompt_version": "x", "assistant": "esther", "text_len": 4}) == []
    assert refused_fields({"Prompt": "x", "PAYLOAD": b"", "transcript": None}) == [
        "PAYLOAD",
        "Prompt",
        "transcript",
    ]
    assert refused_fields({"has_audio": True}) == ["has_audio"]


async def test_call_log_writes_transcripts_as_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    async with open_call_log(path) as call_log:
        assert call_log.enabled
        with bind_call("CA1", "twilio", assistant="esther", prompt_version="v1"):
            async with trio.open_nursery() as nursery:
                for i in range(20):
                    nursery.start_soon(call_log.transcript, "caller", f"line {i}")
            await call_log.transcript("assistant", "hello\nthere")
    text = await trio.Path(path).read_text()
    entries = [json.loads(line) for line in text.splitlines()]
    assert len(entries) == 21
    assert {e["text"] for e in entries[:20]} == {f"line {i}" for i in range(20)}
    assert entries[-1]["text"] == "hello\nthere"
    assert entries[-1]["role"] == "assistant"
    assert all(e["call_id"] == "CA1" and e["prompt_version"] == "v1" for e in entries)
    assert (await trio.Path(path).stat()).st_mode & 0o777 == 0o600


async def test_a_stuck_disk_never_blocks_a_call_and_drops_are_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Finding 13 of issue 9: one lock awaited in every call's Sonic reader let a slow disk
    # stall every call. Now the writer is stuck and transcript() still returns at once.
    stuck = threading.Event()
    real_write = sessions.logs._write_all

    def slow_write(fd: int, data: bytes) -> None:
        stuck.wait(10)
        real_write(fd, data)

    monkeypatch.setattr(sessions.logs, "_write_all", slow_write)
    path = tmp_path / "calls.jsonl"
    counted: list[int] = []
    sent = 50
    async with open_call_log(path, on_drop=lambda: counted.append(1), queue_lines=8) as log:
        with bind_call("CA1", "twilio") as ctx:
            with trio.fail_after(2):
                for i in range(sent):
                    await log.transcript("caller", f"line {i}")
            stuck.set()
    written = (await trio.Path(path).read_text()).splitlines()
    assert log.dropped > 0
    assert len(written) + log.dropped == sent
    assert ctx.call_log_drops == log.dropped == len(counted)


async def test_call_log_mode_is_0600_even_for_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    path.write_text("")
    path.chmod(0o644)
    async with open_call_log(path) as log:
        await log.transcript("caller", "hello")
    assert (await trio.Path(path).stat()).st_mode & 0o777 == 0o600


async def test_call_log_reopens_its_path_after_rotation(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    rotated = tmp_path / "calls.jsonl.1"
    async with open_call_log(path) as log:
        await log.transcript("caller", "before rotation")
        await trio.testing.wait_all_tasks_blocked()  # the writer has taken the line
        path.rename(rotated)
        log.reopen()  # what SIGHUP does
        await log.transcript("caller", "after rotation")
    assert [json.loads(x)["text"] for x in rotated.read_text().splitlines()] == ["before rotation"]
    assert [json.loads(x)["text"] for x in path.read_text().splitlines()] == ["after rotation"]
    assert path.stat().st_mode & 0o777 == 0o600


async def test_call_log_disabled_writes_nothing(tmp_path: Path) -> None:
    async with open_call_log(None) as call_log:
        assert not call_log.enabled
        await call_log.transcript("caller", "secret")
    assert list(await trio.Path(tmp_path).iterdir()) == []


def test_an_unvalidated_assistant_name_is_truncated_and_escaped_in_the_log_context(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    # Finding 11 of issue 9: the name reaches the context before the naming rule rejects it;
    # a 60,000-character name made 60 KB lines. Every line stays short and ASCII-escaped.
    log, buffer = captured
    hostile = "e" * 60_000 + "\n\u2028\x1b[31m"
    with bind_call("CA1", "twilio") as ctx:
        ctx.update(assistant=hostile)
        log.info("prompt refused")
    with bind_call("CA2", "twilio", assistant=hostile):
        log.info("bound with the name")
    raw = buffer.getvalue()
    assert all(len(line) < 400 for line in raw.split("\n")), max(map(len, raw.split("\n")))
    records = lines(buffer)
    for record in records:
        assert record["assistant"].startswith("e" * 32)
        assert "\x1b" not in record["assistant"] and "\u2028" not in record["assistant"]
    with bind_call("CA3", "twilio") as ctx:
        ctx.update(assistant="esther")
        log.info("a valid name is kept as it is")
    assert lines(buffer)[-1]["assistant"] == "esther"
