"""Conformance with the official SDK's recordings (``vectors/bedrock-bidi``) and extra dirs.

Every ``*.json`` in the shared folder and in each directory of ``BEDROCK_VECTORS_DIR``
(colon-separated) runs through the same :func:`check_vector`; nothing depends on a file's
name or scenario. The builders' side (rebuilding each ``nova_event_json`` from its fields)
is covered for the same files in ``test_events.py``.
"""

from __future__ import annotations

import base64
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from actors.errors import EventStreamError, SonicStreamError
from actors.sonic.events import chunk_event_json, encode_input_chunk
from actors.sonic.eventstream import MessageDecoder, decode_message
from actors.sonic.output import parse_output_message
from actors.sonic.signing import (
    Credentials,
    EventSigner,
    event_string_to_sign,
    request_path,
    sign_request,
)

from .vectors import BEDROCK_BIDI, bedrock_vector_paths, load_vector

VECTOR_PATHS = bedrock_vector_paths()


def _credentials(vector: dict[str, Any]) -> Credentials:
    raw = vector["credentials"]
    return Credentials(raw["access_key_id"], raw["secret_access_key"], raw["session_token"])


def check_request(vector: dict[str, Any]) -> str:
    """Reproduce the signed request headers; return the seed signature."""
    request = vector["request"]
    assert (request["method"], request["scheme"]) == ("POST", "https")
    assert request["authority"] == vector["host"]
    # With an overridden endpoint the SDK appends an empty query ("?"); it is not signed.
    assert request["path"] in (
        request_path(vector["model_id"]),
        request_path(vector["model_id"]) + "?",
    )
    now = datetime.strptime(request["headers"]["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    signed = sign_request(
        credentials=_credentials(vector),
        region=vector["region"],
        host=request["authority"],
        path=request["path"],
        now=now,
        service=vector["signing_service"],
    )
    assert signed.canonical_request == request["canonical_request"]
    assert signed.string_to_sign == request["string_to_sign"]
    assert signed.headers == tuple(request["headers"].items())
    return signed.signature


def check_input(vector: dict[str, Any], seed: str) -> None:
    """Reproduce every inner and outer message, signature and string-to-sign, then the end."""
    service = vector["signing_service"]
    signer = EventSigner(
        credentials=_credentials(vector),
        region=vector["region"],
        seed_signature=seed,
        service=service,
    )
    frames = [
        (e, encode_input_chunk(e["nova_event_json"].encode("utf-8"))) for e in vector["events"]
    ]
    end = vector["end_frame"]
    for event, inner in [*frames, (end, b"")]:
        assert inner.hex() == event.get("inner_message_hex", "")
        assert signer.prior_signature == event["prior_signature_hex"]
        assert (
            event_string_to_sign(
                region=vector["region"],
                service=service,
                prior_signature=signer.prior_signature,
                date_ms=event["date_ms"],
                payload=inner,
            )
            == event["string_to_sign"]
        )
        outer = (
            signer.sign(inner, event["date_ms"])
            if event is not end
            else signer.sign_end(end["date_ms"])
        )
        assert outer.hex() == event["outer_message_hex"]
        message = decode_message(outer)
        assert message.get(":date") == event["date_ms"]
        assert message.get(":chunk-signature") == bytes.fromhex(event["signature_hex"])
        assert signer.prior_signature == event["signature_hex"]


def _check_response(message_list: list[Any], expect: dict[str, Any]) -> None:
    assert len(message_list) == 1
    (message,) = message_list
    if expect["kind"] == "event":
        assert json.loads(chunk_event_json(message)) == json.loads(expect["nova_event_json"])
        parse_output_message(message)  # a typed record, never an error, for a recorded event
    elif expect["kind"] == "exception":
        with pytest.raises(SonicStreamError) as caught:
            parse_output_message(message)
        assert caught.value.exception_type == expect["exception_type"]
        assert caught.value.message == expect["message"]
        assert caught.value.original_status_code == expect.get("original_status_code")
        assert caught.value.original_message == expect.get("original_message")
    elif expect["kind"] == "error":
        with pytest.raises(SonicStreamError) as caught:
            parse_output_message(message)
        assert caught.value.exception_type == expect["error_code"]
        assert caught.value.message == expect["error_message"]
    else:
        raise AssertionError(f"unknown expect kind {expect['kind']!r}")


def check_responses(vector: dict[str, Any]) -> None:
    """Decode every response frame to its ``expect``, frame by frame and byte by byte."""
    decoder = MessageDecoder()
    delivered: list[tuple[bytes, dict[str, Any]]] = []
    for response in vector["responses"]:
        frame = bytes.fromhex(response["frame_hex"])
        if response["expect"]["kind"] == "invalid_frame":
            with pytest.raises(EventStreamError):
                decoder.feed(frame)
            break  # the SDK closes the receiver on a bad frame; nothing after it is read
        _check_response(decoder.feed(frame), response["expect"])
        delivered.append((frame, response["expect"]))
    else:
        decoder.eof()

    # The same frames split arbitrarily (here: one byte at a time) decode identically.
    bytewise = MessageDecoder()
    stream = b"".join(frame for frame, _ in delivered)
    messages = [m for i in range(len(stream)) for m in bytewise.feed(stream[i : i + 1])]
    bytewise.eof()
    assert len(messages) == len(delivered)
    for message, (_, expect) in zip(messages, delivered, strict=True):
        _check_response([message], expect)


def check_vector(vector: dict[str, Any]) -> None:
    """Everything a client must reproduce or understand for one recorded session."""
    seed = check_request(vector)
    check_input(vector, seed)
    check_responses(vector)


def test_vectors_exist() -> None:
    assert len(VECTOR_PATHS) >= 2, f"no vectors found under {BEDROCK_BIDI}"


@pytest.mark.parametrize("path", VECTOR_PATHS, ids=lambda p: p.stem)
def test_vector(path: Path) -> None:
    check_vector(load_vector(path))


def test_extra_vector_dirs_are_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Honest scope: this proves BEDROCK_VECTORS_DIR is honoured (several dirs, any file
    # name) and that the check does not key on names. It adds no new recorded behaviour:
    # we cannot produce SDK-recorded bytes here, and a vector made by our own code would
    # only test the code against itself.
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    sources = sorted(BEDROCK_BIDI.glob("*.json"))
    shutil.copy(sources[0], first / "renamed-elsewhere.json")
    shutil.copy(sources[-1], second / "zz-another.json")
    (second / "notes.txt").write_text("not a vector")
    monkeypatch.setenv("BEDROCK_VECTORS_DIR", f"{first}:{second}:")
    paths = bedrock_vector_paths()
    assert paths[-2:] == [first / "renamed-elsewhere.json", second / "zz-another.json"]
    for path in paths[-2:]:
        check_vector(load_vector(path))


@pytest.mark.parametrize(
    ("where", "mutate"),
    [
        (
            "authorization",
            lambda v: v["request"]["headers"].update({"x-amz-date": "20200101T000000Z"}),
        ),
        ("signature", lambda v: v["events"][-1].update(date_ms=v["events"][-1]["date_ms"] + 1000)),
        (
            "event",
            lambda v: v["events"][0].update(
                nova_event_json=v["events"][0]["nova_event_json"] + " "
            ),
        ),
        ("end", lambda v: v["end_frame"].update(signature_hex="00" * 32)),
        (
            "response",
            lambda v: v["responses"][0]["expect"].update(
                nova_event_json=json.dumps({"event": {"completionStart": {}}})
            ),
        ),
    ],
)
def test_check_vector_fails_on_a_tampered_copy(where: str, mutate: Any) -> None:
    vector = load_vector(sorted(BEDROCK_BIDI.glob("*.json"))[0])
    check_vector(vector)
    mutate(vector)
    with pytest.raises(AssertionError):
        check_vector(vector)


def test_recorded_padding_member_is_ignored() -> None:
    # The shared recordings include a chunk whose payload has a member beside "bytes"
    # (README: the SDK ignores it); make sure that case really is exercised above.
    padded = [
        bytes.fromhex(r["frame_hex"])
        for path in sorted(BEDROCK_BIDI.glob("*.json"))
        for r in load_vector(path)["responses"]
        if r["expect"]["kind"] == "event"
        and set(json.loads(decode_message(bytes.fromhex(r["frame_hex"])).payload)) != {"bytes"}
    ]
    assert padded
    for frame in padded:
        message = decode_message(frame)
        nova = base64.b64decode(json.loads(message.payload)["bytes"])
        assert chunk_event_json(message) == nova


def test_checker_handles_every_expect_kind() -> None:
    # The shared recordings have no error or invalid_frame responses; a future vector may.
    # Frames made with our own encoders, so this checks the checker, not conformance.
    from actors.sonic.events import encode_error, encode_exception, encode_output_chunk

    corrupted = bytearray(encode_output_chunk(b'{"event":{"completionStart":{}}}'))
    corrupted[-1] ^= 0xFF
    vector = {
        "responses": [
            {
                "frame_hex": encode_exception(
                    "modelStreamErrorException", "m", originalStatusCode=500, originalMessage="o"
                ).hex(),
                "expect": {
                    "kind": "exception",
                    "exception_type": "modelStreamErrorException",
                    "message": "m",
                    "original_status_code": 500,
                    "original_message": "o",
                },
            },
            {
                "frame_hex": encode_error("InternalFailure", "x").hex(),
                "expect": {"kind": "error", "error_code": "InternalFailure", "error_message": "x"},
            },
            {"frame_hex": bytes(corrupted).hex(), "expect": {"kind": "invalid_frame"}},
        ]
    }
    check_responses(vector)
    vector["responses"][-1]["frame_hex"] = encode_output_chunk(b"{}").hex()
    with pytest.raises(pytest.fail.Exception, match="DID NOT RAISE"):
        check_responses(vector)
