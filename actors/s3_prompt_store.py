"""The S3 prompt store: the one module in NovaVoice that imports boto3.

boto3 is blocking, so every request runs in a trio worker thread under an explicit
:class:`trio.CapacityLimiter` whose size matches botocore's connection pool
(``max_pool_connections``): more threads than pooled connections would only queue inside
urllib3 and log "Connection pool is full". The client is injected, never created at import
time; :func:`make_s3_client` builds one with the standard credential chain, and botocore
itself honours ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` when no endpoint is passed.

Reads are conditional: given the ETag of the copy we hold, S3 answers 304 and no body is
transferred. botocore surfaces that 304 as a ``ClientError``; we map it to
:class:`~actors.prompt_store.NotModified`. Every other failure becomes one of the
project's :class:`~actors.errors.PromptError` subclasses, with the botocore error as
``__cause__``, and a message naming the assistant and key but never the prompt text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
import boto3
import trio
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    ReadTimeoutError,
)

from actors.assistant_names import prompt_key
from actors.errors import (
    PromptAccessDenied,
    PromptBucketNotFound,
    PromptError,
    PromptInvalid,
    PromptNotFound,
    PromptStoreError,
    PromptThrottled,
    PromptTimeout,
)
from actors.prompt_budget import PromptLoadBudget
from actors.prompt_store import (
    DEFAULT_MAX_PROMPT_BYTES,
    NotModified,
    StoredPrompt,
    decode_definition,
)

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
else:
    S3Client = Any

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
_ACCESS_CODES = frozenset(
    {"AccessDenied", "403", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
)
_THROTTLE_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "503",
    }
)
_TIMEOUT_CODES = frozenset({"RequestTimeout", "RequestTimeoutException"})


def make_s3_client(
    *,
    region: str,
    max_connections: int,
    endpoint_url: str | None = None,
    session: boto3.session.Session | None = None,
    static_credentials: tuple[str, str] | None = None,
    budget: PromptLoadBudget | None = None,
) -> S3Client:
    """Build an S3 client whose connection pool holds ``max_connections`` connections.

    Credentials come from ``session`` (default: a fresh :class:`boto3.session.Session`,
    i.e. the standard chain: environment, profile, SSO, container role, IMDS). With
    ``endpoint_url=None`` botocore applies ``AWS_ENDPOINT_URL_S3`` itself.
    ``static_credentials`` (access key id, secret) is for local S3 servers only (the demo,
    benchmarks), which accept any key; production uses the chain. Call this once,
    in the trio thread, and share the client: created clients are thread-safe, creating
    them concurrently is not.

    A client that reads prompts for calls passes the daemon's ``budget``: its connect and
    read timeouts and retry attempts are derived from it (:mod:`actors.prompt_budget`), so
    botocore cannot outlast a call's prompt load. Without one (tools that seed or inspect
    a bucket, never a call) botocore keeps its own defaults.
    """
    if budget is None:
        config = Config(max_pool_connections=max_connections, retries={"mode": "standard"})
    else:
        config = Config(
            max_pool_connections=max_connections,
            connect_timeout=budget.s3_connect_timeout,
            read_timeout=budget.s3_read_timeout,
            retries={"max_attempts": budget.s3_max_attempts, "mode": "standard"},
        )
    if session is None:
        if static_credentials is not None:
            key_id, secret = static_credentials
            session = boto3.session.Session(aws_access_key_id=key_id, aws_secret_access_key=secret)
        else:
            session = boto3.session.Session()
    return session.client("s3", region_name=region, endpoint_url=endpoint_url, config=config)


def map_s3_error(exc: Exception, *, assistant: str, key: str, bucket: str) -> PromptError:
    """Translate a botocore failure into the project's error for ``assistant``/``key``.

    The caller raises the result ``from exc`` so the botocore error stays in ``__cause__``.
    """
    where = f"assistant {assistant!r} (s3://{bucket}/{key})"
    if isinstance(exc, ReadTimeoutError | ConnectTimeoutError):
        return PromptTimeout(f"S3 timed out reading {where}", assistant=assistant, key=key)
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket":
            return PromptBucketNotFound(
                f"prompts bucket {bucket!r} does not exist, reading {where}",
                assistant=assistant,
                key=key,
            )
        if code in _NOT_FOUND_CODES or (status == 404 and not code):
            return PromptNotFound(f"no prompt for {where}", assistant=assistant, key=key)
        if code in _ACCESS_CODES or status == 403:
            return PromptAccessDenied(
                f"S3 denied access to {where} ({code or status})", assistant=assistant, key=key
            )
        if code in _THROTTLE_CODES or status == 503:
            return PromptThrottled(
                f"S3 throttled the read of {where} ({code or status})",
                assistant=assistant,
                key=key,
            )
        if code in _TIMEOUT_CODES:
            return PromptTimeout(f"S3 timed out reading {where}", assistant=assistant, key=key)
        return PromptStoreError(
            f"S3 failed reading {where}: {code or 'HTTP ' + str(status)}",
            assistant=assistant,
            key=key,
        )
    return PromptStoreError(
        f"S3 failed reading {where}: {type(exc).__name__}", assistant=assistant, key=key
    )


def _is_not_modified(exc: ClientError) -> bool:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return status == 304 or code in {"304", "NotModified"}


@attrs.define(eq=False)
class S3PromptStore:
    """Reads ``s3://<bucket>/<prefix><assistant>.md`` through an injected boto3 client.

    ``limiter`` bounds the worker threads; size it like the client's
    ``max_pool_connections`` (tests use ``CapacityLimiter(1)`` because moto is not
    thread-safe). ``max_bytes`` is the documented size limit: larger objects are refused
    from ``ContentLength`` before a byte of the body is read.
    """

    client: S3Client
    bucket: str
    prefix: str
    limiter: trio.CapacityLimiter
    max_bytes: int = DEFAULT_MAX_PROMPT_BYTES

    async def fetch(
        self, assistant: str, *, if_none_match: str | None = None
    ) -> StoredPrompt | NotModified:
        """Read the prompt, conditionally on ``if_none_match`` (see :class:`PromptStore`)."""
        key = prompt_key(self.prefix, assistant)
        # A GET is idempotent: if the caller is cancelled, abandoning the thread lets the
        # call go at once; the thread finishes on its own and still holds its limiter slot.
        return await trio.to_thread.run_sync(
            self._fetch_blocking,
            assistant,
            key,
            if_none_match,
            limiter=self.limiter,
            abandon_on_cancel=True,
        )

    def _fetch_blocking(
        self, assistant: str, key: str, if_none_match: str | None
    ) -> StoredPrompt | NotModified:
        try:
            if if_none_match is None:
                response = self.client.get_object(Bucket=self.bucket, Key=key)
            else:
                response = self.client.get_object(
                    Bucket=self.bucket, Key=key, IfNoneMatch=if_none_match
                )
        except ClientError as exc:
            if if_none_match is not None and _is_not_modified(exc):
                return NotModified(assistant=assistant, key=key, etag=if_none_match)
            raise map_s3_error(exc, assistant=assistant, key=key, bucket=self.bucket) from exc
        except BotoCoreError as exc:
            raise map_s3_error(exc, assistant=assistant, key=key, bucket=self.bucket) from exc

        body = response["Body"]
        try:
            length = response.get("ContentLength")
            if length is not None and length > self.max_bytes:
                raise PromptInvalid(
                    f"prompt for assistant {assistant!r} at {key!r} is {length} bytes, "
                    f"larger than the {self.max_bytes}-byte limit",
                    assistant=assistant,
                    key=key,
                )
            # One byte past the limit is enough to know a length-less body is too big.
            raw = body.read(self.max_bytes + 1)
        except BotoCoreError as exc:
            raise map_s3_error(exc, assistant=assistant, key=key, bucket=self.bucket) from exc
        finally:
            body.close()
        text, definition = decode_definition(
            raw, assistant=assistant, key=key, max_bytes=self.max_bytes
        )
        return StoredPrompt(
            assistant=assistant,
            key=key,
            text=text,
            etag=response.get("ETag", ""),
            version_id=response.get("VersionId"),
            size=len(raw),
            definition=definition,
        )
