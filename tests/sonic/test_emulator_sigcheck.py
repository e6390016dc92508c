"""The emulator's own SigV4 verifier against vectors recorded from the official SDK."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from actors.sonic.eventstream import decode_message
from devkit.emulator.sigcheck import AuthFailure, RequestAuth, event_signature, verify_request
from tests.sonic.vectors import bedrock_vector_paths

VECTORS = bedrock_vector_paths()


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def check(vector: dict[str, Any], **changes: Any) -> RequestAuth | AuthFailure:
    req = vector["request"]
    headers = {**req["headers"], "host": req["authority"], **req["unsigned_headers_sent"]}
    creds = vector["credentials"]
    kwargs: dict[str, Any] = {
        "method": req["method"],
        "path": req["path"],
        "headers": headers,
        "credentials": {creds["access_key_id"]: creds["secret_access_key"]},
        "session_tokens": {},
        "region": vector["region"],
        "now": datetime.strptime(req["headers"]["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(
            tzinfo=UTC
        ),
        "max_skew": 300.0,
    }
    kwargs.update(changes)
    return verify_request(**kwargs)


@pytest.mark.parametrize("path", VECTORS, ids=[p.stem for p in VECTORS])
def test_sdk_request_and_every_event_verify(path: Path) -> None:
    vector = load(path)
    auth = check(vector)
    assert isinstance(auth, RequestAuth), auth
    assert auth.seed_signature == vector["events"][0]["prior_signature_hex"]
    prior = auth.seed_signature
    for frame in [*vector["events"], vector["end_frame"]]:
        outer = decode_message(bytes.fromhex(frame["outer_message_hex"]))
        expected = event_signature(
            secret=auth.secret_access_key,
            region=auth.region,
            service=auth.service,
            prior_signature=prior,
            date_ms=frame["date_ms"],
            payload=outer.payload,
        )
        assert expected == outer.get(":chunk-signature") == bytes.fromhex(frame["signature_hex"])
        prior = expected.hex()


@pytest.mark.parametrize("path", VECTORS, ids=[p.stem for p in VECTORS])
def test_tampering_is_refused(path: Path) -> None:
    vector = load(path)
    creds = vector["credentials"]
    req = vector["request"]
    wrong_secret = check(vector, credentials={creds["access_key_id"]: "not-the-secret"})
    assert isinstance(wrong_secret, AuthFailure)
    assert (wrong_secret.status, wrong_secret.error_type) == (403, "InvalidSignatureException")
    assert "signature we calculated does not match" in wrong_secret.message

    other_path = check(vector, path=req["path"].replace("nova-2", "nova-3"))
    assert isinstance(other_path, AuthFailure)

    unknown = check(vector, credentials={"SOMEONEELSE": "x"})
    assert isinstance(unknown, AuthFailure) and unknown.error_type == "UnrecognizedClientException"

    late = check(vector, now=datetime(2030, 1, 1, tzinfo=UTC))
    assert isinstance(late, AuthFailure) and "Signature expired" in late.message

    missing = check(vector, headers={"host": req["authority"]})
    assert (
        isinstance(missing, AuthFailure)
        and missing.error_type == "MissingAuthenticationTokenException"
    )

    # An extra "?" (what the SDK sends with a custom endpoint) does not change the signature.
    assert isinstance(check(vector, path=req["path"] + "?"), RequestAuth)


def test_event_signature_depends_on_payload_date_and_chain() -> None:
    def sig(
        prior: str = "00" * 32, date_ms: int = 1_700_000_000_000, payload: bytes = b"x"
    ) -> bytes:
        return event_signature(
            secret="s",
            region="us-east-1",
            service="bedrock",
            prior_signature=prior,
            date_ms=date_ms,
            payload=payload,
        )

    base = sig()
    assert sig(payload=b"y") != base
    assert sig(date_ms=1_700_000_000_001) != base
    assert sig(prior="11" * 32) != base
    keys: dict[str, bytes] = {}
    cached = event_signature(
        secret="s", region="us-east-1", service="bedrock", prior_signature="00" * 32,
        date_ms=1_700_000_000_000, payload=b"x", keys=keys,
    )  # fmt: skip
    assert cached == base and list(keys) == ["20231114"]
