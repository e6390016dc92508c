"""The records the versioned prompt store returns, and how version metadata is stored.

Metadata travels in HTTP headers (``x-amz-meta-*``), which carry ASCII only, so author,
message and rollback source are percent-encoded (RFC 3986) on write and decoded on read:
any Unicode survives. ``sha256`` is hex already.
"""

from __future__ import annotations

import hashlib
import urllib.parse
from datetime import datetime

import attrs


@attrs.frozen(kw_only=True)
class VersionMetadata:
    """What the admin records with each version (``None`` for versions written by hand)."""

    author: str | None = None
    message: str | None = None
    sha256: str | None = None
    rollback_of: str | None = None
    """The version id a rollback copied, else ``None``."""


@attrs.frozen(kw_only=True)
class StoredVersion:
    """One version of an assistant, with its bytes."""

    name: str
    key: str
    body: bytes = attrs.field(repr=False)
    version_id: str
    etag: str
    """Quotes included, as S3 returns it; send it back as ``If-Match`` to publish over it."""
    size: int
    time: datetime | None
    """When S3 stored this version (``LastModified``)."""
    metadata: VersionMetadata

    @property
    def text(self) -> str:
        """The body as text (invalid UTF-8 replaced; the validator reports it properly)."""
        return self.body.decode("utf-8", errors="replace")

    @property
    def author(self) -> str | None:
        """Who published this version."""
        return self.metadata.author

    @property
    def message(self) -> str | None:
        """The change message."""
        return self.metadata.message

    @property
    def sha256(self) -> str:
        """SHA-256 of the body, computed from the bytes (the metadata copy may be absent)."""
        return hashlib.sha256(self.body).hexdigest()


@attrs.frozen(kw_only=True)
class VersionInfo:
    """One entry of an assistant's history (no body)."""

    version_id: str
    etag: str | None
    time: datetime | None
    size: int
    is_latest: bool
    deleted: bool = False
    """A delete marker (someone deleted the object by hand); it has no content."""
    metadata: VersionMetadata = VersionMetadata()

    @property
    def author(self) -> str | None:
        """Who published this version."""
        return self.metadata.author

    @property
    def message(self) -> str | None:
        """The change message."""
        return self.metadata.message

    @property
    def sha256(self) -> str | None:
        """SHA-256 recorded at publish time (``None`` for versions not written by the admin)."""
        return self.metadata.sha256


@attrs.frozen(kw_only=True)
class AssistantSummary:
    """One line of the assistant list."""

    name: str
    version_id: str | None
    etag: str
    size: int
    updated: datetime | None
    author: str | None


def encode_metadata(value: str) -> str:
    """Percent-encode ``value`` for an S3 metadata header (reversible, readable)."""
    return urllib.parse.quote(value, safe=" !#$&'()*+,/:;=?@[]~")


def _decode(value: str | None) -> str | None:
    return None if value is None else urllib.parse.unquote(value)


def metadata_from_s3(raw: dict[str, str] | None) -> VersionMetadata:
    """The admin's metadata from an S3 response's ``Metadata`` (absent keys: ``None``)."""
    raw = raw or {}
    return VersionMetadata(
        author=_decode(raw.get("author")),
        message=_decode(raw.get("message")),
        sha256=raw.get("sha256"),
        rollback_of=_decode(raw.get("rollback-of")),
    )
