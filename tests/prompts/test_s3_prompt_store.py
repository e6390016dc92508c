"""The S3 prompt store against moto: real boto3 calls, real clock, one worker thread.

Never combined with the autojump clock (python-trio/trio#456); each test has a generous
``fail_after`` instead. The client is created inside ``mock_aws`` so moto intercepts it, and
the limiter is ``CapacityLimiter(1)`` because moto's backends are not thread-safe.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import trio
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core import set_initial_no_auth_action_count

from actors.assistant_names import AssistantName
from actors.errors import (
    PromptAccessDenied,
    PromptBucketNotFound,
    PromptInvalid,
    PromptNotFound,
)
from actors.prompt_store import NotModified, StoredPrompt
from actors.s3_prompt_store import S3PromptStore, make_s3_client

from .conftest import cache_over

BUCKET = "nova-sonic-prompts"
PREFIX = "assistants/"
ESTHER = "You are Esther, the front desk of a small clinic. Be warm and brief."
READ_POLICY = Path(__file__).parents[2] / "aws" / "s3-prompt-read-policy.json"
DEADLINE = 30.0


@pytest.fixture
def s3(aws_env: None) -> Iterator[object]:
    """A moto S3 with the prompts bucket and Esther's prompt; the client made inside it."""
    with mock_aws():
        client = make_s3_client(region="us-east-1", max_connections=1)
        client.create_bucket(Bucket=BUCKET)
        client.put_object(Bucket=BUCKET, Key=f"{PREFIX}esther.md", Body=ESTHER.encode())
        yield client


def store_for(client: object, *, bucket: str = BUCKET, max_bytes: int = 64 * 1024) -> S3PromptStore:
    return S3PromptStore(
        client=client,  # type: ignore[arg-type]
        bucket=bucket,
        prefix=PREFIX,
        limiter=trio.CapacityLimiter(1),
        max_bytes=max_bytes,
    )


async def test_found(s3: object) -> None:
    with trio.fail_after(DEADLINE):
        prompt = await store_for(s3).fetch("esther")
    assert isinstance(prompt, StoredPrompt)
    assert prompt.text == ESTHER
    assert prompt.key == "assistants/esther.md"
    assert prompt.etag.startswith('"') and len(prompt.etag) == 34
    assert prompt.version_id is None  # unversioned bucket
    assert prompt.size == len(ESTHER.encode())


async def test_missing_prompt(s3: object) -> None:
    with trio.fail_after(DEADLINE), pytest.raises(PromptNotFound) as info:
        await store_for(s3).fetch("nobody")
    assert info.value.assistant == "nobody"
    assert info.value.key == "assistants/nobody.md"
    assert "assistants/nobody.md" in str(info.value)
    assert info.value.__cause__ is not None


async def test_wrong_bucket(s3: object) -> None:
    with trio.fail_after(DEADLINE), pytest.raises(PromptBucketNotFound) as info:
        await store_for(s3, bucket="no-such-prompts").fetch("esther")
    assert "no-such-prompts" in str(info.value) and "esther" in str(info.value)


async def test_unchanged_prompt_revalidates_with_304(s3: object) -> None:
    store = store_for(s3)
    with trio.fail_after(DEADLINE):
        first = await store.fetch("esther")
        assert isinstance(first, StoredPrompt)
        again = await store.fetch("esther", if_none_match=first.etag)
        assert again == NotModified(assistant="esther", key=first.key, etag=first.etag)

        s3.put_object(Bucket=BUCKET, Key=first.key, Body=b"Esther, revised.")  # type: ignore[attr-defined]
        changed = await store.fetch("esther", if_none_match=first.etag)
    assert isinstance(changed, StoredPrompt)
    assert changed.text == "Esther, revised."
    assert changed.etag != first.etag


async def test_versioned_bucket_reports_the_version_id(s3: object) -> None:
    client = s3
    client.put_bucket_versioning(  # type: ignore[attr-defined]
        Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"}
    )
    put = client.put_object(  # type: ignore[attr-defined]
        Bucket=BUCKET, Key=f"{PREFIX}esther.md", Body=b"Esther v2"
    )
    with trio.fail_after(DEADLINE):
        prompt = await store_for(client).fetch("esther")
    assert isinstance(prompt, StoredPrompt)
    assert prompt.version_id == put["VersionId"]
    assert prompt.version_id not in (None, "null")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty"),
        (b"  \n\t ", "empty"),
        ("Esther: café".encode("latin-1"), "not valid UTF-8"),
        (b"x" * 1025, "larger than"),
    ],
)
async def test_unusable_content_is_refused(s3: object, body: bytes, reason: str) -> None:
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}broken.md", Body=body)  # type: ignore[attr-defined]
    with trio.fail_after(DEADLINE), pytest.raises(PromptInvalid) as info:
        await store_for(s3, max_bytes=1024).fetch("broken")
    message = str(info.value)
    assert reason in message
    assert "assistants/broken.md" in message
    assert "café" not in message and "xxxx" not in message


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        (b"---\nvoice: bob\n---\nSecret words\n", "invalid_value at line 2, column 8"),
        (b"Hello {{ caller }} and secret words\n", "unfilled_placeholder at line 1, column 7"),
        (b"---\nvoice: amy\nSecret words\n", "front_matter_unclosed at line 1, column 1"),
        (b"Secret\x00words\n", "control_character at line 1, column 7"),
    ],
)
async def test_an_invalid_definition_is_refused_by_the_same_validator(
    s3: object, body: bytes, rule: str
) -> None:
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}broken.md", Body=body)  # type: ignore[attr-defined]
    with trio.fail_after(DEADLINE), pytest.raises(PromptInvalid) as info:
        await store_for(s3).fetch("broken")
    message = str(info.value)
    assert rule in message and "assistants/broken.md" in message
    assert "Secret" not in message and "caller" not in message


async def test_the_definition_is_parsed_once_at_fetch(s3: object) -> None:
    body = b"---\nvoice: tiffany\nmax_tokens: 200\n---\nYou are Esther.\n"
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}esther.md", Body=body)  # type: ignore[attr-defined]
    with trio.fail_after(DEADLINE):
        prompt = await store_for(s3).fetch("esther")
    assert isinstance(prompt, StoredPrompt)
    assert prompt.text == body.decode()  # the whole object, as stored
    assert prompt.definition.voice == "tiffany" and prompt.definition.max_tokens == 200
    assert prompt.definition.prompt == "You are Esther.\n"


async def test_oversize_is_refused_from_content_length_without_reading(s3: object) -> None:
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}huge.md", Body=b"y" * 5000)  # type: ignore[attr-defined]
    reads: list[int | None] = []
    original = s3.get_object  # type: ignore[attr-defined]

    def spying_get_object(**kwargs: object) -> object:
        response = original(**kwargs)
        body = response["Body"]
        real_read = body.read

        def read(amt: int | None = None) -> bytes:
            reads.append(amt)
            return bytes(real_read(amt))

        body.read = read
        return response

    s3.get_object = spying_get_object  # type: ignore[attr-defined]
    with trio.fail_after(DEADLINE), pytest.raises(PromptInvalid, match="5000 bytes"):
        await store_for(s3, max_bytes=1024).fetch("huge")
    assert reads == []


async def test_cache_over_s3_single_flight_and_304(s3: object) -> None:
    gets: list[str] = []
    s3.meta.events.register(  # type: ignore[attr-defined]
        "before-call.s3.GetObject", lambda params, **_: gets.append(params["url_path"])
    )
    store = store_for(s3)
    results: list[StoredPrompt] = []

    async def one() -> None:
        results.append(await cache.get(AssistantName("esther")))

    with trio.fail_after(DEADLINE):
        async with cache_over(store, ttl=0.0) as cache:  # ttl 0: every request revalidates
            async with trio.open_nursery() as nursery:
                for _ in range(50):
                    nursery.start_soon(one)
            assert len(gets) == 1
            await cache.get(AssistantName("esther"))
            stats = cache.statistics()
    assert len(results) == 50 and {r.text for r in results} == {ESTHER}
    assert len(gets) == 2
    assert stats.not_modified == 1


def test_endpoint_comes_from_the_standard_variable(
    aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:4566")
    client = make_s3_client(region="eu-west-1", max_connections=7)
    assert client.meta.endpoint_url == "http://127.0.0.1:4566"
    assert client.meta.config.max_pool_connections == 7  # type: ignore[attr-defined]
    assert client.meta.region_name == "eu-west-1"


# Six unauthenticated actions set the scene; from the seventh on, moto enforces IAM. The
# decorator only wraps synchronous functions, so this test runs its own trio loop.
@set_initial_no_auth_action_count(6)
def test_read_policy_allows_prompts_and_denies_the_rest(aws_env: None) -> None:
    with mock_aws():
        admin = boto3.session.Session()
        s3_admin = admin.client("s3", region_name="us-east-1")
        iam = admin.client("iam", region_name="us-east-1")
        s3_admin.create_bucket(Bucket=BUCKET)
        s3_admin.put_object(Bucket=BUCKET, Key=f"{PREFIX}esther.md", Body=ESTHER.encode())
        s3_admin.put_object(Bucket=BUCKET, Key="secrets.md", Body=b"not a prompt")
        iam.create_user(UserName="novavoice")
        iam.put_user_policy(
            UserName="novavoice", PolicyName="prompts-read", PolicyDocument=READ_POLICY.read_text()
        )
        key = iam.create_access_key(UserName="novavoice")["AccessKey"]
        daemon = boto3.session.Session(
            aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"]
        )
        client = make_s3_client(region="us-east-1", max_connections=1, session=daemon)
        # A store reading outside the granted prefix must be refused.
        outside = S3PromptStore(
            client=client, bucket=BUCKET, prefix="", limiter=trio.CapacityLimiter(1)
        )

        async def scenario() -> tuple[object, BaseException | None]:
            with trio.fail_after(DEADLINE):
                prompt = await store_for(client).fetch("esther")
                try:
                    await outside.fetch("secrets")
                except PromptAccessDenied as exc:
                    return prompt, exc
                return prompt, None

        prompt, denied = trio.run(scenario)
        assert isinstance(prompt, StoredPrompt) and prompt.text == ESTHER
        assert isinstance(denied, PromptAccessDenied)
        assert "secrets.md" in str(denied)
        assert "not a prompt" not in str(denied)
        # The policy grants reads only: the daemon's credentials cannot overwrite a prompt.
        with pytest.raises(ClientError, match="AccessDenied"):
            client.put_object(Bucket=BUCKET, Key=f"{PREFIX}esther.md", Body=b"hijacked")
