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

import contextlib
import contextvars
import json
import logging
import os
import re
import sys
from collections.abc import AsyncIterator, Callable, Iterator
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
    call_log_drops: int = 0
    """Transcript lines of this call that the call log dropped (its queue was full)."""

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
    call channel need not care whether an operator turned it on.

    One writer task owns the file; :meth:`transcript` only puts the line into a bounded queue
    and never waits, so a slow or stuck disk cannot stall any call's Sonic reader. A line that
    finds the queue full is dropped and counted: in the ``novavoice_queue_drops_total``
    metric (``queue="call_log"``, through ``on_drop``) and in the bound call's context
    (``call_log_drops`` in its call-end line). The file is opened mode 0600 and re-chmodded
    on every open, and :meth:`reopen` (SIGHUP) makes the writer reopen the path, so
    logrotate can move the file away.
    """

    def __init__(
        self,
        path: str | None,
        send: trio.MemorySendChannel[bytes | None] | None = None,
        on_drop: Callable[[], None] | None = None,
    ) -> None:
        self.path = path
        self._send = send
        self._on_drop = on_drop
        self._reopen = False
        self.closed = trio.Event()
        """Set once the writer has written everything queued and closed the file."""
        self.dropped = 0
        """Lines dropped because the writer was behind (all calls)."""

    @property
    def enabled(self) -> bool:
        """Whether transcripts are being recorded."""
        return self._send is not None

    async def transcript(self, role: Role, text: str, **fields: Any) -> None:
        """Queue one final transcript line, stamped with the bound call's context.

        Never waits for the disk: a full queue drops the line and counts it.
        """
        await trio.lowlevel.checkpoint()
        self.write_nowait(role, text, **fields)

    def write_nowait(self, role: Role, text: str, **fields: Any) -> None:
        """:meth:`transcript` without the checkpoint, for lines written from synchronous
        code (a turn settled by a mark, or the end of a call under cancellation)."""
        if self._send is None:
            return
        ctx = _current_call.get()
        entry: dict[str, Any] = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds")}
        entry.update(ctx.fields() if ctx is not None else {})
        entry.update(fields)
        entry.update(role=role, text=text)
        data = (json.dumps(entry, default=str, ensure_ascii=True) + "\n").encode()
        try:
            self._send.send_nowait(data)
        except (trio.WouldBlock, trio.ClosedResourceError):
            self.dropped += 1
            if ctx is not None:
                ctx.call_log_drops += 1
            if self._on_drop is not None:
                self._on_drop()

    def reopen(self) -> None:
        """Reopen the file at its path before the next write (SIGHUP, after logrotate)."""
        if self._send is None:
            return
        self._reopen = True
        # Wake an idle writer; a full queue means the writer is busy and sees the flag soon.
        with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
            self._send.send_nowait(None)

    async def _run_writer(self, receive: trio.MemoryReceiveChannel[bytes | None], fd: int) -> None:
        assert self.path is not None
        try:
            async with receive:
                async for first in receive:
                    batch = [first]
                    # Everything already queued goes out in one thread hop.
                    with contextlib.suppress(trio.WouldBlock, trio.EndOfChannel):
                        while len(batch) < 256:
                            batch.append(receive.receive_nowait())
                    if self._reopen:
                        self._reopen = False
                        fd = await trio.to_thread.run_sync(_reopen, fd, self.path)
                    data = b"".join(line for line in batch if line is not None)
                    if data:
                        # One write() per batch on an O_APPEND file: lines never interleave.
                        await trio.to_thread.run_sync(_write_all, fd, data)
        finally:
            os.close(fd)
            self.closed.set()


def _open_private(path: str) -> int:
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o600)
    # O_CREAT's mode applies only to a new file: enforce 0600 on an existing one too.
    os.fchmod(fd, 0o600)
    return fd


def _reopen(fd: int, path: str) -> int:
    new = _open_private(path)
    os.close(fd)
    return new


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


CALL_LOG_QUEUE_LINES = 1024
"""Transcript lines the call log's queue holds before it drops (a few minutes of speech
across a full pod)."""


@asynccontextmanager
async def open_call_log(
    path: str | Path | None,
    *,
    on_drop: Callable[[], None] | None = None,
    queue_lines: int = CALL_LOG_QUEUE_LINES,
) -> AsyncIterator[CallLog]:
    """Open the call log at ``path`` (mode 0600, appended to) with its writer task;
    ``None`` disables it. ``on_drop`` is called for each line dropped (a metric).

    Leaving the block writes what is still queued (bounded by a 5 s shielded deadline).
    """
    if path is None:
        yield CallLog(None)
        return
    send, receive = trio.open_memory_channel[bytes | None](queue_lines)
    log = CallLog(os.fspath(path), send, on_drop)
    # Opened here, so a bad path fails start-up rather than the writer task.
    fd = await trio.to_thread.run_sync(_open_private, os.fspath(path))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(log._run_writer, receive, fd)
        try:
            yield log
        finally:
            send.close()  # the writer drains what is queued, then closes the file
            with trio.move_on_after(5.0, shield=True):
                await log.closed.wait()
            nursery.cancel_scope.cancel()  # a writer stuck on the disk is abandoned
