"""Structured JSON logs on stdlib :mod:`logging`, with the call's context on every line.

The service log is one JSON object per line: ``ts`` (UTC, ISO 8601), ``level``, ``logger``,
``event`` (a short machine name, ``"log"`` when the caller gave none), ``message``, then the
call context (``call_id``, ``carrier``, ``assistant``, ``prompt_version``) when one is bound,
then any ``extra=`` fields, then ``exc`` for a traceback.

The call context lives in a :class:`contextvars.ContextVar`. trio copies the current context
into every task it spawns, so everything started inside :func:`bind_call` (the call's nursery
and its children) logs with that call's fields. The bound :class:`CallContext` is one shared
object, so :meth:`CallContext.update` (say, once the prompt version is known) reaches tasks
that were already running.

Redaction guard: the service log never carries prompt text, transcripts or audio. Any field
whose name contains ``prompt``, ``transcript``, ``audio``, ``text``, ``pcm`` or ``payload``
and whose value is not a plain number (a count or a duration is harmless) is refused: its value
is dropped and the field name is listed under ``redacted``. ``prompt_version`` (an S3 ETag or
version id) is the one allowed exception. The guard sees field names only: never put such
content in the message itself. Transcripts belong in the opt-in :class:`CallLog`
(:func:`open_call_log`), a separate file.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

import attrs
import trio

CALL_FIELDS = ("call_id", "carrier", "assistant", "prompt_version")
_FORBIDDEN = re.compile(r"prompt|transcript|audio|text|pcm|payload", re.IGNORECASE)
_ALLOWED = frozenset({"prompt_version"})
# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


LOG_VALUE_LIMIT = 64
"""Characters kept of an untrusted identifier (assistant name, call id) in the log context."""


def log_safe(value: str) -> str:
    """An untrusted identifier made fit for a log line: escaped, then truncated.

    The assistant name and call id come from the carrier before any validation, so a hostile
    value must not make huge lines or carry control characters into a terminal.
    """
    escaped = value.encode("unicode_escape").decode("ascii")
    if len(escaped) <= LOG_VALUE_LIMIT:
        return escaped
    return f"{escaped[:LOG_VALUE_LIMIT]}...(+{len(escaped) - LOG_VALUE_LIMIT})"


def _log_safe_optional(value: str | None) -> str | None:
    return None if value is None else log_safe(value)


@attrs.define(eq=False, kw_only=True)
class CallContext:
    """The identity of one call, shared by every task of the call's tree.

    The call id and assistant name are untrusted until validated, so they are stored through
    :func:`log_safe` (attrs converters also run on assignment).
    """

    call_id: str = attrs.field(converter=log_safe)
    carrier: str
    assistant: str | None = attrs.field(default=None, converter=_log_safe_optional)
    prompt_version: str | None = None

    def update(self, *, assistant: str | None = None, prompt_version: str | None = None) -> None:
        """Fill in fields learnt after the call started (assistant, prompt version)."""
        if assistant is not None:
            self.assistant = assistant
        if prompt_version is not None:
            self.prompt_version = prompt_version

    def fields(self) -> dict[str, str]:
        """The context as log fields, unset ones left out."""
        values = (self.call_id, self.carrier, self.assistant, self.prompt_version)
        return {k: v for k, v in zip(CALL_FIELDS, values, strict=True) if v is not None}


# A ContextVar must be created once, at import; it holds no state of its own (each context
# carries its own value), so this is not a module-level cache.
_current_call: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar(
    "novavoice_call", default=None
)


def current_call() -> CallContext | None:
    """The call bound in this task's context, if any."""
    return _current_call.get()


@contextmanager
def bind_call(
    call_id: str,
    carrier: str,
    *,
    assistant: str | None = None,
    prompt_version: str | None = None,
) -> Iterator[CallContext]:
    """Bind a call's identity to this task and every task it spawns inside the block."""
    ctx = CallContext(
        call_id=call_id, carrier=carrier, assistant=assistant, prompt_version=prompt_version
    )
    token = _current_call.set(ctx)
    try:
        yield ctx
    finally:
        _current_call.reset(token)


def refused_fields(fields: dict[str, Any]) -> list[str]:
    """Names of fields the redaction guard keeps out of the service log."""
    return sorted(
        name
        for name, value in fields.items()
        if name not in _ALLOWED
        and _FORBIDDEN.search(name)
        and not (isinstance(value, int | float) and not isinstance(value, bool))
    )


class CallContextFilter(logging.Filter):
    """Stamps the bound call's fields onto each record (explicit ``extra=`` fields win).

    Install it on the handler, so the fields are taken in the logging task's own context even
    if formatting later happens elsewhere.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the call fields; never drops a record."""
        ctx = _current_call.get()
        if ctx is not None:
            for name, value in ctx.fields().items():
                if not hasattr(record, name):
                    setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON, applying the redaction guard."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record``; never raises on odd field values (they become strings)."""
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", None) or "log",
            "message": record.getMessage(),
        }
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD and k != "event"}
        redacted = refused_fields(extra)
        for name in redacted:
            del extra[name]
        line.update({k: extra.pop(k) for k in CALL_FIELDS if k in extra})
        for name, value in extra.items():
            line.setdefault(name, value)  # an extra named "ts" or "level" cannot forge those
        if redacted:
            line["redacted"] = redacted
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        # ensure_ascii keeps every line free of raw U+2028 and friends: one object, one line.
        return json.dumps(line, default=str, ensure_ascii=True)


def configure_logging(level: int | str = logging.INFO, stream: IO[str] | None = None) -> None:
    """Send every log record to ``stream`` (stderr by default) as JSON lines.

    Replaces the root logger's handlers, so calling it twice does not duplicate lines.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(CallContextFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def log_event(
    logger: logging.Logger,
    event: str,
    message: str = "",
    *,
    level: int = logging.INFO,
    **fields: Any,
) -> None:
    """Log one structured event: ``log_event(log, "listening", url=..., admin_url=...)``."""
    logger.log(level, message or event, extra={"event": event, **fields})


Role = Literal["caller", "assistant"]


class CallLog:
    """The opt-in call log: JSON lines of final transcripts, in a file of their own.

    Built by :func:`open_call_log`. Disabled (``path is None``) it writes nothing, so the
    call channel need not care whether an operator turned it on. Lines are written one at a
    time from a worker thread, so a slow disk never stalls the event loop.
    """

    def __init__(self, fd: int | None) -> None:
        self._fd = fd
        self._lock = trio.Lock()

    @property
    def enabled(self) -> bool:
        """Whether transcripts are being recorded."""
        return self._fd is not None

    async def transcript(self, role: Role, text: str, **fields: Any) -> None:
        """Append one final transcript line, stamped with the bound call's context."""
        if self._fd is None:
            await trio.lowlevel.checkpoint()
            return
        ctx = _current_call.get()
        entry: dict[str, Any] = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds")}
        entry.update(ctx.fields() if ctx is not None else {})
        entry.update(fields)
        entry.update(role=role, text=text)
        data = (json.dumps(entry, default=str, ensure_ascii=True) + "\n").encode()
        fd = self._fd
        async with self._lock:
            # One write() per line on an O_APPEND file: lines never interleave.
            await trio.to_thread.run_sync(_write_all, fd, data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@asynccontextmanager
async def open_call_log(path: str | Path | None) -> AsyncIterator[CallLog]:
    """Open the call log at ``path`` (created 0600, appended to); ``None`` disables it."""
    if path is None:
        yield CallLog(None)
        return
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
    fd = await trio.to_thread.run_sync(os.open, os.fspath(path), flags, 0o600)
    log = CallLog(fd)
    try:
        yield log
    finally:
        log._fd = None
        os.close(fd)
