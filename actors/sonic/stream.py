"""Sonic streams: the trio-shaped face of one ``InvokeModelWithBidirectionalStream``.

:meth:`SonicClient.open_stream` signs the POST (reference ``nova-sonic.md`` §1.2), opens an
HTTP/2 stream on the pool and, by default, waits for the response headers: a non-200 becomes
:class:`SonicHTTPError` (§2.4). It yields a :class:`SonicStream`:

- ``await stream.send(nova_event_json)`` wraps one Nova event in a chunk message, signs it
  into the chain (§1.3) and writes it as one DATA write;
- ``async for event in stream`` decodes response frames into typed records from
  :mod:`.output`; an exception frame raises :class:`SonicStreamError` (typed, with
  ``retryable``) and the stream stays readable, as in the official SDK (§9).

Leaving the block, normally or by error or cancellation, closes the stream politely under
a shielded timeout: ``contentEnd`` for contents the caller left open, ``promptEnd``,
``sessionEnd`` (the stream tracks what it sent), the signed empty end frame and END_STREAM,
a short drain of what the server still sends, then RST_STREAM if it is still open.

Why one file of about 460 lines: :class:`SonicClient` and :class:`SonicStream` are one
lifecycle split across two classes. The client builds the stream from a pooled H2 stream and
the signer it seeds, calls its private ``wait_response``, ``_close`` and ``_h2.release`` to
retry refused streams and to close on every exit path, and owns the close timeout that
``_close`` uses; the stream's close path in turn relies on what the client set up. Putting the
client in its own module would make those private calls cross a module boundary and add a
layer to the ``actors.sonic`` import contract, without separating anything that changes
independently. The per-frame code (``send``, ``__anext__``) stays where it is either way.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Protocol

import trio

from actors.errors import (
    EventStreamError,
    LocalProtocolError,
    SonicError,
    SonicHTTPError,
    SonicStreamRefused,
    SonicTimeout,
)
from actors.sonic import events, output, signing
from actors.sonic.credentials import CredentialsProvider
from actors.sonic.endpoint import Endpoint
from actors.sonic.eventstream import Message, MessageDecoder
from actors.sonic.h2stream import H2Stream

__all__ = ["DEFAULT_MODEL_ID", "SonicClient", "SonicStream", "StreamOpener", "http_error"]

logger = logging.getLogger(__name__)

DEFAULT_MODEL_ID = "amazon.nova-2-sonic-v1:0"
USER_AGENT = "novavoice/0.1 (trio; h2)"
_ERROR_BODY_LIMIT = 64 * 1024
_DRAIN_TIMEOUT = 1.0
_REFUSED_RETRIES = 3
# audioInput is most of the traffic and opens or closes nothing: skip parsing it.
_AUDIO_INPUT_PREFIX = b'{"event":{"audioInput"'

# Used when a non-200 response carries no x-amzn-errortype (reference §2.4 table).
_TYPE_BY_STATUS = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelStreamErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def http_error(status: int, headers: Mapping[str, str], body: bytes) -> SonicHTTPError:
    """Map a non-200 response to :class:`SonicHTTPError` as the official SDK does.

    The type is ``x-amzn-errortype`` before its first ``:`` (then the body's ``__type``,
    then a guess from the status); the message comes from the JSON body's ``message``,
    then the ``x-amzn-errormessage`` header, then the raw body.
    """
    parsed: object = None
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    fields = parsed if isinstance(parsed, dict) else {}
    error_type = headers.get("x-amzn-errortype", "").split(":", 1)[0].strip()
    if not error_type:
        raw_type = fields.get("__type")
        if isinstance(raw_type, str) and raw_type:
            error_type = raw_type.rsplit("#", 1)[-1].split(":", 1)[0]
    if not error_type:
        error_type = _TYPE_BY_STATUS.get(status, f"HTTP{status}")
    message = fields.get("message", fields.get("Message"))
    if not isinstance(message, str) or not message:
        message = headers.get("x-amzn-errormessage") or body.decode("utf-8", "replace")[:500]
    return SonicHTTPError(status, error_type, message or "(no message)")


class SonicStream:
    """One open Nova Sonic stream (see the module docstring). Not shared between tasks
    for reading: one task iterates, any task may :meth:`send` (sends are serialised)."""

    def __init__(
        self,
        h2_stream: H2Stream,
        signer: signing.EventSigner,
        *,
        credentials_expiry: datetime | None,
        first_response_timeout: float,
    ) -> None:
        self._h2 = h2_stream
        self._signer = signer
        self.credentials_expiry = credentials_expiry
        """When the credentials signing this stream expire (``None``: long-term keys).
        Rotate the stream before then: its signature chain cannot change keys."""
        self.credentials_deadline: float | None = None
        """The same instant on trio's clock, converted once, here, where the stream pins
        its credentials: everything that waits for it uses trio time only."""
        if credentials_expiry is not None:
            left = (credentials_expiry - datetime.now(UTC)).total_seconds()
            self.credentials_deadline = trio.current_time() + left
        self._first_response_timeout = first_response_timeout
        self._send_lock = trio.StrictFIFOLock()
        self._decoder = MessageDecoder()
        self._pending: deque[Message] = deque()
        self._status: int | None = None
        self._response_error: SonicError | None = None
        self._receive_error: SonicError | None = None
        self._input_ended = False
        self._send_broken: LocalProtocolError | None = None
        self._session_open = False
        self._prompts: dict[str, None] = {}
        self._contents: dict[tuple[str, str], None] = {}
        self.events_sent = 0
        self.events_received = 0

    @property
    def stream_id(self) -> int:
        """The HTTP/2 stream id (for logs)."""
        return self._h2.stream_id

    @property
    def status(self) -> int | None:
        """The HTTP status once the response headers arrived."""
        return self._status

    @property
    def input_ended(self) -> bool:
        """The signed end frame and END_STREAM were sent; :meth:`send` now refuses."""
        return self._input_ended

    # --- response ---

    async def wait_response(self) -> None:
        """Wait for the response headers; raise :class:`SonicHTTPError` unless 200.

        Raises :class:`SonicTimeout` after ``first_response_timeout`` seconds.
        """
        if self._response_error is not None:
            raise self._response_error
        if self._status is not None:
            await trio.lowlevel.checkpoint()
            return
        try:
            with trio.fail_after(self._first_response_timeout):
                status, headers = await self._h2.receive_response()
                self._status = status
                if status != 200:
                    body = await self._read_body(_ERROR_BODY_LIMIT)
                    self._response_error = http_error(status, dict(headers), body)
        except trio.TooSlowError:
            self._response_error = SonicTimeout(
                f"no response from Bedrock within {self._first_response_timeout}s "
                f"(stream {self.stream_id})"
            )
        except SonicError as exc:
            self._response_error = exc
        if self._response_error is not None:
            raise self._response_error

    async def _read_body(self, limit: int) -> bytes:
        body = bytearray()
        while len(body) < limit:
            chunk = await self._h2.receive_data()
            if not chunk:
                break
            body += chunk
        return bytes(body[:limit])

    # --- sending ---

    async def send(self, nova_event_json: bytes) -> None:
        """Send one Nova Sonic input event (its UTF-8 JSON), signed into the chain.

        Raises :class:`LocalProtocolError` after :meth:`end_input`, or the stream's
        connection error (:class:`SonicConnectionError`) if it broke.
        """
        lock = self._send_lock
        try:
            lock.acquire_nowait()  # uncontended (the usual case): no extra scheduling round
        except trio.WouldBlock:
            await lock.acquire()
        try:
            if self._input_ended:
                raise LocalProtocolError("this Sonic stream's input was already ended")
            if self._response_error is not None:
                raise self._response_error
            if self._send_broken is not None:
                raise self._send_broken
            inner = events.encode_input_chunk(nova_event_json)
            # The lock keeps sign-then-write atomic per stream, so the chain order is the
            # wire order even when several tasks send.
            signed = self._signer.sign(inner, _now_ms())
            try:
                await self._h2.send_data(signed)
            except BaseException:
                # Cancelled or failed after signing (maybe half written): every later event
                # would fail the server's chain check, so the stream is unusable. Say so
                # plainly to later senders and reset it; the exception itself propagates.
                self._send_broken = LocalProtocolError(
                    f"a send on Sonic stream {self.stream_id} was interrupted after signing"
                )
                self._h2.reset()
                raise
            self.events_sent += 1
            if not nova_event_json.startswith(_AUDIO_INPUT_PREFIX):
                self._track(nova_event_json)
        finally:
            lock.release()

    def _track(self, nova_event_json: bytes) -> None:
        try:
            body = json.loads(nova_event_json)["event"]
            ((name, fields),) = body.items()
        except (ValueError, KeyError, TypeError, AttributeError):
            return  # not ours to validate; the server will say what is wrong
        if not isinstance(fields, dict):
            return
        prompt = fields.get("promptName")
        content = fields.get("contentName")
        if name == "sessionStart":
            self._session_open = True
        elif name == "sessionEnd":
            self._session_open = False
        elif name == "promptStart" and isinstance(prompt, str):
            self._prompts[prompt] = None
        elif name == "promptEnd" and isinstance(prompt, str):
            self._prompts.pop(prompt, None)
            self._contents = {k: None for k in self._contents if k[0] != prompt}
        elif name == "contentStart" and isinstance(prompt, str) and isinstance(content, str):
            self._contents[(prompt, content)] = None
        elif name == "contentEnd" and isinstance(prompt, str) and isinstance(content, str):
            self._contents.pop((prompt, content), None)

    @property
    def open_contents(self) -> tuple[tuple[str, str], ...]:
        """``(promptName, contentName)`` of contents started and not ended, oldest first."""
        return tuple(self._contents)

    @property
    def open_prompts(self) -> tuple[str, ...]:
        """Prompts started and not ended, oldest first."""
        return tuple(self._prompts)

    async def end_input(self) -> None:
        """End the conversation politely and close our side of the stream.

        Sends ``contentEnd`` for every open content (newest first), ``promptEnd`` for open
        prompts and ``sessionEnd`` if a session was started, then the signed empty end
        frame and an empty DATA frame with END_STREAM, as the official SDK does (§9).
        Idempotent. The server's remaining events can still be read afterwards.
        """
        if self._input_ended:
            await trio.lowlevel.checkpoint()
            return
        for prompt, content in reversed(list(self._contents)):
            await self.send(events.content_end(prompt_name=prompt, content_name=content))
        for prompt in reversed(list(self._prompts)):
            await self.send(events.prompt_end(prompt_name=prompt))
        if self._session_open:
            await self.send(events.session_end())
        async with self._send_lock:
            if self._signer.ended:  # another task ended it while we sent the closing events
                return
            await self._h2.send_data(self._signer.sign_end(_now_ms()))
            self._input_ended = True
            await self._h2.end_stream()

    # --- receiving ---

    def __aiter__(self) -> AsyncIterator[output.OutputEvent]:
        return self

    async def __anext__(self) -> output.OutputEvent:
        """The next output event; ``StopAsyncIteration`` when the server ended the stream.

        Raises :class:`SonicStreamError` for an exception frame (the stream stays readable),
        :class:`EventStreamError` for a malformed frame (the stream is then unusable),
        :class:`SonicConnectionError` if the stream was reset or its connection lost.
        """
        await self.wait_response()
        while not self._pending:
            if self._receive_error is not None:
                raise self._receive_error
            try:
                # A bad frame right after good ones in the same chunk is reported by the
                # decoder's next feed; surface it now rather than after more data arrives.
                self._decoder.feed(b"")
                data = await self._h2.receive_data()
                if not data:
                    self._decoder.eof()  # raises for a message cut off by END_STREAM
                    raise StopAsyncIteration
                self._pending.extend(self._decoder.feed(data))
            except EventStreamError as exc:
                self._receive_error = exc
                self._h2.reset()
                raise
        message = self._pending.popleft()
        self.events_received += 1
        return output.parse_output_message(message)

    # --- closing ---

    async def _close(self, close_timeout: float) -> None:
        """Polite close under a shielded timeout, then release the HTTP/2 stream."""
        try:
            with trio.move_on_after(close_timeout, shield=True):
                if self._response_error is None and not self._input_ended:
                    await self.end_input()
                if self._response_error is None and not self._h2.remote_ended:
                    with trio.move_on_after(min(_DRAIN_TIMEOUT, close_timeout)):
                        while await self._h2.receive_data():
                            pass
        except SonicError as exc:
            # Best effort: the stream is going away either way.
            logger.debug("closing Sonic stream %d: %s", self.stream_id, exc)
        finally:
            self._h2.release()


class StreamOpener(Protocol):
    """Where a :class:`SonicClient` opens its HTTP/2 streams: a
    :class:`~actors.sonic.pool.ConnectionPool` (which also builds the client)."""

    async def open_stream(self, headers: Sequence[tuple[str, str]]) -> H2Stream:
        """Send a request's HEADERS on some connection and return the new stream."""
        ...

    def statistics(self) -> dict[str, int]:
        """Counters for metrics and tests."""
        ...


class SonicClient:
    """Opens Sonic streams on a pooled set of HTTP/2 connections (see :mod:`.pool`)."""

    def __init__(
        self,
        *,
        pool: StreamOpener,
        endpoint: Endpoint,
        region: str,
        model_id: str,
        credentials_provider: CredentialsProvider,
        first_response_timeout: float = 10.0,
        close_timeout: float = 3.0,
    ) -> None:
        self._pool = pool
        self._endpoint = endpoint
        self._region = region
        self._model_id = model_id
        self._credentials = credentials_provider
        self._first_response_timeout = first_response_timeout
        self._close_timeout = close_timeout
        self.streams_opened = 0
        self.streams_retried = 0

    @property
    def endpoint(self) -> Endpoint:
        """Where streams go."""
        return self._endpoint

    @property
    def pool(self) -> StreamOpener:
        """The connection pool (for statistics)."""
        return self._pool

    @asynccontextmanager
    async def open_stream(
        self, *, model_id: str | None = None, wait_for_response: bool = True
    ) -> AsyncIterator[SonicStream]:
        """Open one bidirectional stream (see the module docstring).

        With ``wait_for_response=False`` it yields as soon as the request headers are sent,
        and the response status is checked by the first read (for servers that answer only
        after the first events). A stream the server provably did not process (above a
        GOAWAY's last stream id, or REFUSED_STREAM) is opened again elsewhere, up to
        ``_REFUSED_RETRIES`` times. Raises :class:`SonicHTTPError`, :class:`SonicTimeout`,
        :class:`SonicConnectionError` or :class:`SigningError`.
        """
        stream = await self._open(model_id or self._model_id, wait_for_response)
        try:
            yield stream
        finally:
            await stream._close(self._close_timeout)

    async def _open(self, model_id: str, wait_for_response: bool) -> SonicStream:
        attempt = 0
        while True:
            stream = await self._start(model_id)
            if not wait_for_response:
                return stream
            try:
                await stream.wait_response()
            except SonicStreamRefused:
                stream._h2.release()
                attempt += 1
                if attempt > _REFUSED_RETRIES:
                    raise
                self.streams_retried += 1
                continue
            except BaseException:
                await stream._close(self._close_timeout)
                raise
            return stream

    async def _start(self, model_id: str) -> SonicStream:
        credentials = await self._credentials.get_credentials()
        path = self._endpoint.request_path(signing.request_path(model_id))
        signed = signing.sign_request(
            credentials=credentials,
            region=self._region,
            host=self._endpoint.authority,
            path=path,
            now=datetime.now(UTC),
        )
        headers = [
            (":method", "POST"),
            (":scheme", "https"),
            (":authority", self._endpoint.authority),
            (":path", path),
            *signed.headers,
            ("user-agent", USER_AGENT),
            ("accept", "*/*"),
        ]
        h2_stream = await self._pool.open_stream(headers)
        self.streams_opened += 1
        return SonicStream(
            h2_stream,
            signing.EventSigner(
                credentials=credentials, region=self._region, seed_signature=signed.signature
            ),
            credentials_expiry=credentials.expiry,
            first_response_timeout=self._first_response_timeout,
        )
