"""botocore failures map onto the project's prompt errors (no network, a stub client)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from actors.errors import (
    PromptAccessDenied,
    PromptBucketNotFound,
    PromptError,
    PromptNotFound,
    PromptStoreError,
    PromptThrottled,
    PromptTimeout,
)
from actors.s3_prompt_store import S3PromptStore, map_s3_error


def client_error(code: str, status: int) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "GetObject")


CASES: list[tuple[Exception, type[PromptError]]] = [
    (client_error("NoSuchKey", 404), PromptNotFound),
    (client_error("404", 404), PromptNotFound),
    (client_error("", 404), PromptNotFound),
    (client_error("NoSuchBucket", 404), PromptBucketNotFound),
    (client_error("AccessDenied", 403), PromptAccessDenied),
    (client_error("403", 403), PromptAccessDenied),
    (client_error("InvalidAccessKeyId", 403), PromptAccessDenied),
    (client_error("KMS.AccessDeniedException", 403), PromptAccessDenied),
    (client_error("SlowDown", 503), PromptThrottled),
    (client_error("503", 503), PromptThrottled),
    (client_error("ServiceUnavailable", 503), PromptThrottled),
    (client_error("Throttling", 400), PromptThrottled),
    (client_error("RequestTimeout", 400), PromptTimeout),
    (client_error("InternalError", 500), PromptStoreError),
    (client_error("InvalidObjectState", 403), PromptAccessDenied),
    (ReadTimeoutError(endpoint_url="https://s3.example"), PromptTimeout),
    (ConnectTimeoutError(endpoint_url="https://s3.example"), PromptTimeout),
    (EndpointConnectionError(endpoint_url="https://s3.example"), PromptStoreError),
]


@pytest.mark.parametrize(("exc", "expected"), CASES, ids=[repr(c[0])[:60] for c in CASES])
def test_mapping(exc: Exception, expected: type[PromptError]) -> None:
    mapped = map_s3_error(exc, assistant="esther", key="assistants/esther.md", bucket="b")
    assert type(mapped) is expected
    assert mapped.assistant == "esther"
    assert mapped.key == "assistants/esther.md"
    assert "esther" in str(mapped) and "assistants/esther.md" in str(mapped)


class StubBody:
    def __init__(self, error: Exception) -> None:
        self.error = error
        self.closed = False

    def read(self, amt: int | None = None) -> bytes:
        raise self.error

    def close(self) -> None:
        self.closed = True


class StubClient:
    """Stands in for a boto3 client: raises, or returns a body that fails mid-read."""

    def __init__(self, *, raises: Exception | None = None, body: StubBody | None = None) -> None:
        self.raises = raises
        self.body = body

    def get_object(self, **kwargs: Any) -> dict[str, Any]:
        if self.raises is not None:
            raise self.raises
        return {"Body": self.body, "ContentLength": 10, "ETag": '"e"'}


def stub_store(client: StubClient) -> S3PromptStore:
    return S3PromptStore(
        client=client,  # type: ignore[arg-type]
        bucket="b",
        prefix="assistants/",
        limiter=trio.CapacityLimiter(1),
    )


@pytest.mark.parametrize(
    ("raises", "expected"),
    [
        (ReadTimeoutError(endpoint_url="https://s3.example"), PromptTimeout),
        (client_error("SlowDown", 503), PromptThrottled),
        (EndpointConnectionError(endpoint_url="https://s3.example"), PromptStoreError),
    ],
)
async def test_store_raises_mapped_errors_with_cause(
    raises: Exception, expected: type[PromptError]
) -> None:
    with pytest.raises(expected) as info:
        await stub_store(StubClient(raises=raises)).fetch("esther")
    assert info.value.__cause__ is raises


async def test_timeout_while_reading_the_body_is_a_timeout_and_closes_it() -> None:
    body = StubBody(ReadTimeoutError(endpoint_url="https://s3.example"))
    with pytest.raises(PromptTimeout):
        await stub_store(StubClient(body=body)).fetch("esther")
    assert body.closed
