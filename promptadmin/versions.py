"""The versioned prompt store: read, publish, list history and roll back assistants in S3.

Every assistant is one object, ``<prefix><name>.md``, in a bucket with versioning enabled.
S3 keeps every version, so history is S3's own version list and is never rewritten: a
rollback writes the old bytes again as a *new* current version.

Publishing never overwrites a change the writer has not seen. A write is conditional on
what the writer started from: ``If-Match: <ETag>`` for an existing assistant,
``If-None-Match: *`` for a new one. If someone else published in between, S3 answers 412
(or 409 for a concurrent conditional write) and :class:`~actors.errors.PromptConflict` is
raised: nothing is written, the other version stays current, and the caller re-reads.

Each version records its author, change message and SHA-256 as S3 user metadata
(``x-amz-meta-author``, ``-message``, ``-sha256``, and ``-rollback-of`` on rollbacks).
Metadata travels in HTTP headers, so author and message are percent-encoded (RFC 3986) and
decoded on read: any Unicode survives.

The API is synchronous (boto3 blocks); async callers run each method in a worker thread,
or use :class:`~promptadmin.async_versions.AsyncPromptVersions`, which does exactly that
under a capacity limiter.
Content is validated by :func:`~actors.assistant_definition.validate_definition` before
anything is sent.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import attrs
from botocore.exceptions import BotoCoreError, ClientError

from actors.assistant_definition import AssistantDefinition, ValidationReport, validate_definition
from actors.assistant_names import PROMPT_SUFFIX, prompt_key, validate_assistant_name
from actors.errors import (
    PromptConflict,
    PromptError,
    PromptRejected,
    PromptVersionNotFound,
    VersioningDisabled,
)
from actors.prompt_store import DEFAULT_MAX_PROMPT_BYTES
from actors.s3_prompt_store import make_s3_client, map_s3_error
from promptadmin.version_records import (
    AssistantSummary,
    StoredVersion,
    VersionInfo,
    VersionMetadata,
    encode_metadata,
    metadata_from_s3,
)

__all__ = [
    "AssistantSummary",
    "PromptVersions",
    "StoredVersion",
    "VersionInfo",
    "VersionMetadata",
    "make_prompt_versions",
]

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

    from sessions.config import Settings
else:
    S3Client = Any

MAX_AUTHOR_CHARS = 100
"""Longest author name recorded with a version."""
MAX_MESSAGE_CHARS = 500
"""Longest change message (S3 caps all user metadata of an object at 2 KB)."""
CONTENT_TYPE = "text/markdown; charset=utf-8"

_CONFLICT_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})


def _error_code(exc: ClientError) -> tuple[str, int | None]:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code, status


@attrs.define(eq=False)
class PromptVersions:
    """Versioned assistants in ``s3://<bucket>/<prefix>`` through an injected boto3 client.

    Methods block; see the module docstring for the conditional-write rules.
    """

    client: S3Client
    bucket: str
    prefix: str
    max_bytes: int = DEFAULT_MAX_PROMPT_BYTES
    """The daemon's ``PROMPT_MAX_BYTES``: larger definitions are refused before upload."""

    # --- checks ---------------------------------------------------------------------------

    def check_versioning(self) -> None:
        """Raise :class:`~actors.errors.VersioningDisabled` unless the bucket is versioned."""
        try:
            status = self.client.get_bucket_versioning(Bucket=self.bucket).get("Status")
        except (ClientError, BotoCoreError) as exc:
            raise map_s3_error(exc, assistant="", key="", bucket=self.bucket) from exc
        if status != "Enabled":
            state = "suspended" if status == "Suspended" else "never enabled"
            raise VersioningDisabled(
                f"bucket {self.bucket!r} does not keep versions (versioning {state}); "
                f"enable it: aws s3api put-bucket-versioning --bucket {self.bucket} "
                "--versioning-configuration Status=Enabled",
                bucket=self.bucket,
                status=status,
            )

    def validate(self, body: bytes) -> tuple[AssistantDefinition | None, ValidationReport]:
        """Validate ``body`` with this store's size limit (nothing is sent)."""
        return validate_definition(body, max_bytes=self.max_bytes)

    # --- reads ----------------------------------------------------------------------------

    def list_assistants(self) -> list[AssistantSummary]:
        """Every assistant under the prefix, sorted by name, with its current version."""
        summaries: list[AssistantSummary] = []
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for obj in page.get("Contents", []):
                    name = self._name_of(obj["Key"])
                    if name is None:
                        continue
                    head = self.client.head_object(Bucket=self.bucket, Key=obj["Key"])
                    summaries.append(
                        AssistantSummary(
                            name=name,
                            version_id=head.get("VersionId"),
                            etag=head.get("ETag", ""),
                            size=head.get("ContentLength", obj.get("Size", 0)),
                            updated=head.get("LastModified"),
                            author=metadata_from_s3(head.get("Metadata")).author,
                        )
                    )
        except (ClientError, BotoCoreError) as exc:
            raise map_s3_error(exc, assistant="*", key=self.prefix, bucket=self.bucket) from exc
        return sorted(summaries, key=lambda s: s.name)

    def _name_of(self, key: str) -> str | None:
        if not key.startswith(self.prefix) or not key.endswith(PROMPT_SUFFIX):
            return None
        name = key[len(self.prefix) : -len(PROMPT_SUFFIX)]
        try:
            return validate_assistant_name(name)
        except PromptError:
            return None  # some other object under the prefix: not an assistant

    def get(self, name: str, version_id: str | None = None) -> StoredVersion:
        """Read the current version of ``name`` (or ``version_id``).

        Raises :class:`~actors.errors.PromptNotFound` for a missing assistant,
        :class:`~actors.errors.PromptVersionNotFound` for a missing version.
        """
        key = prompt_key(self.prefix, name)
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if version_id is not None:
            args["VersionId"] = version_id
        try:
            response = self.client.get_object(**args)
            body = response["Body"]
            try:
                data = body.read()
            finally:
                body.close()
        except ClientError as exc:
            code, _ = _error_code(exc)
            if version_id is not None and code in {"NoSuchVersion", "InvalidArgument", "400"}:
                raise PromptVersionNotFound(
                    f"assistant {name!r} has no version {version_id!r}", assistant=name, key=key
                ) from exc
            raise map_s3_error(exc, assistant=name, key=key, bucket=self.bucket) from exc
        except BotoCoreError as exc:
            raise map_s3_error(exc, assistant=name, key=key, bucket=self.bucket) from exc
        return StoredVersion(
            name=name,
            key=key,
            body=data,
            version_id=response.get("VersionId") or "null",
            etag=response.get("ETag", ""),
            size=len(data),
            time=response.get("LastModified"),
            metadata=metadata_from_s3(response.get("Metadata")),
        )

    def history(self, name: str, *, limit: int | None = None) -> list[VersionInfo]:
        """The versions of ``name``, newest first (at most ``limit``), with their metadata.

        S3's version listing carries no user metadata, so each version costs one HEAD.
        Raises :class:`~actors.errors.PromptNotFound` if the assistant has no version.
        """
        key = prompt_key(self.prefix, name)
        entries: list[VersionInfo] = []
        paginator = self.client.get_paginator("list_object_versions")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=key):
                merged: list[tuple[dict[str, Any], bool]] = [
                    (dict(v), False) for v in page.get("Versions", [])
                ] + [(dict(m), True) for m in page.get("DeleteMarkers", [])]
                # Versions and delete markers come as two lists, each newest first: merge
                # by time; within one timestamp (LastModified has 1 s resolution) the
                # latest goes first, and sorted() keeps S3's order otherwise.
                merged.sort(
                    key=lambda item: (item[0]["LastModified"], bool(item[0].get("IsLatest"))),
                    reverse=True,
                )
                for entry, deleted in merged:
                    if entry["Key"] != key:  # the prefix also matches "<name>.md.bak"
                        continue
                    entries.append(self._version_info(key, entry, deleted))
                    if limit is not None and len(entries) >= limit:
                        return entries
        except (ClientError, BotoCoreError) as exc:
            raise map_s3_error(exc, assistant=name, key=key, bucket=self.bucket) from exc
        if not entries:
            raise map_s3_error(
                ClientError({"Error": {"Code": "NoSuchKey"}}, "ListObjectVersions"),
                assistant=name,
                key=key,
                bucket=self.bucket,
            )
        return entries

    def _version_info(self, key: str, entry: dict[str, Any], deleted: bool) -> VersionInfo:
        version_id = entry.get("VersionId") or "null"
        metadata = VersionMetadata()
        if not deleted:
            head = self.client.head_object(Bucket=self.bucket, Key=key, VersionId=version_id)
            metadata = metadata_from_s3(head.get("Metadata"))
        return VersionInfo(
            version_id=version_id,
            etag=entry.get("ETag"),
            time=entry.get("LastModified"),
            size=int(entry.get("Size", 0)),
            is_latest=bool(entry.get("IsLatest")),
            deleted=deleted,
            metadata=metadata,
        )

    # --- writes ---------------------------------------------------------------------------

    def put(
        self,
        name: str,
        body: bytes,
        *,
        author: str,
        message: str,
        if_match: str | None,
        rollback_of: str | None = None,
    ) -> StoredVersion:
        """Publish ``body`` as the new current version of ``name``.

        ``if_match`` is the ETag of the version the writer started from, ``None`` for a new
        assistant. The body is validated first (:class:`~actors.errors.PromptRejected`
        carries the report; nothing is sent). A concurrent change raises
        :class:`~actors.errors.PromptConflict`. Returns the version written.
        """
        key = prompt_key(self.prefix, name)
        _check_text("author", author, MAX_AUTHOR_CHARS, name, key)
        _check_text("message", message, MAX_MESSAGE_CHARS, name, key)
        _, report = self.validate(body)
        if not report.ok:
            first = report.errors[0]
            raise PromptRejected(
                f"definition for assistant {name!r} is invalid ({len(report.errors)} error(s); "
                f"first at line {first.line}, column {first.column}: {first.message})",
                assistant=name,
                key=key,
                report=report,
            )
        metadata = {
            "author": encode_metadata(author),
            "message": encode_metadata(message),
            "sha256": hashlib.sha256(body).hexdigest(),
        }
        if rollback_of is not None:
            metadata["rollback-of"] = encode_metadata(rollback_of)
        condition = {"IfMatch": if_match} if if_match is not None else {"IfNoneMatch": "*"}
        try:
            response = self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ContentType=CONTENT_TYPE,
                Metadata=metadata,
                **condition,  # type: ignore[arg-type]
            )
        except ClientError as exc:
            code, status = _error_code(exc)
            if code in _CONFLICT_CODES or status in (409, 412):
                started = f"version {if_match}" if if_match is not None else "no assistant"
                raise PromptConflict(
                    f"assistant {name!r} changed since it was read (started from {started}); "
                    "nothing was written: read the current version and apply the change again",
                    assistant=name,
                    key=key,
                    expected=if_match,
                ) from exc
            raise map_s3_error(exc, assistant=name, key=key, bucket=self.bucket) from exc
        except BotoCoreError as exc:
            raise map_s3_error(exc, assistant=name, key=key, bucket=self.bucket) from exc
        version_id: str | None = response.get("VersionId")
        if not version_id:
            # S3 returns no version id only when the bucket is unversioned: say so loudly
            # (callers check first; this catches versioning switched off meanwhile).
            self.check_versioning()
        return self.get(name, version_id or None)

    def rollback(
        self, name: str, version_id: str, *, author: str, message: str, if_match: str | None
    ) -> StoredVersion:
        """Publish the bytes of ``version_id`` again as a new current version.

        History is never rewritten: the rollback is one more version, whose metadata names
        the version it copied. The same conditional-write and validation rules as
        :meth:`put` apply (an old version that fails today's rules is refused).
        """
        old = self.get(name, version_id)
        return self.put(
            name,
            old.body,
            author=author,
            message=message,
            if_match=if_match,
            rollback_of=old.version_id,
        )


def _check_text(what: str, value: str, limit: int, name: str, key: str) -> None:
    if not value.strip():
        raise PromptRejected(f"the {what} must not be empty", assistant=name, key=key)
    if len(value) > limit:
        raise PromptRejected(
            f"the {what} is {len(value)} characters (at most {limit})", assistant=name, key=key
        )
    if any(ord(c) < 32 and c != "\n" for c in value):
        raise PromptRejected(f"the {what} has control characters", assistant=name, key=key)


def make_prompt_versions(
    settings: Settings,
    *,
    client: S3Client | None = None,
    endpoint_url: str | None = None,
    static_credentials: tuple[str, str] | None = None,
) -> PromptVersions:
    """A :class:`PromptVersions` for the daemon's bucket, prefix, region and size limit.

    Without ``client``, one is built with the standard credential chain (botocore honours
    ``AWS_ENDPOINT_URL_S3``); run the admin with its own, write-capable credentials.
    ``endpoint_url`` and ``static_credentials`` are for a local S3 (the demo, tests), as in
    :func:`~actors.s3_prompt_store.make_s3_client`.
    """
    if client is None:
        client = make_s3_client(
            region=settings.aws_region,
            max_connections=settings.prompts.s3_max_connections,
            endpoint_url=endpoint_url,
            static_credentials=static_credentials,
        )
    return PromptVersions(
        client=client,
        bucket=settings.prompts.bucket,
        prefix=settings.prompts.prefix,
        max_bytes=settings.prompts.max_bytes,
    )
