"""A minimal h2 client that drives the emulator without the product's Sonic client.

It uses only h2 and the sans-IO codec, signer, events and output parser, so emulator tests
and the emulator load benchmark do not depend on the production connection code (and the
emulator's tests cannot pass merely because client and server share a bug).
"""

from __future__ import annotations

import math
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import attrs
import h2.config
import h2.connection
import h2.events
import numpy as np
import trio

from actors.errors import EventStreamError, SonicStreamError
from actors.sonic import events as ev
from actors.sonic.eventstream import MessageDecoder
from actors.sonic.output import (
    parse_output_message,
)
from actors.sonic.signing import Credentials, EventSigner, request_path, sign_request
from devkit.emulator import Emulator, EmulatorConfig, StreamPlan

MODEL = "amazon.nova-2-sonic-v1:0"
CREDS = Credentials("AKIDEMULATOR", "emulator-secret")
RATE_IN = 16000
RATE_OUT = 8000
CHUNK = 512 * 2  # 32 ms at 16 kHz

FAST = StreamPlan(time_to_first_audio=0.05, reply_seconds=0.6, audio_speed=20.0)


def config(**changes: Any) -> EmulatorConfig:
    base = EmulatorConfig(
        credentials={CREDS.access_key_id: CREDS.secret_access_key},
        plan=FAST,
        pause_scale=0.1,  # MEDIUM: 0.175 s
        min_speech_seconds=0.05,
    )
    return attrs.evolve(base, **changes)


def tone(seconds: float) -> bytes:
    t = np.arange(round(seconds * RATE_IN)) / RATE_IN
    return (0.3 * 32767 * np.sin(2 * np.pi * 200 * t)).astype("<i2").tobytes()


def silence(seconds: float) -> bytes:
    return bytes(2 * round(seconds * RATE_IN))


# --- the minimal client -------------------------------------------------------------------


class TestStream:
    """One request stream: send signed Nova events, receive parsed items."""

    __test__ = False

    def __init__(self, conn: MiniConnection, stream_id: int, signer: EventSigner) -> None:
        self.conn = conn
        self.stream_id = stream_id
        self.signer = signer
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.body = b""
        self.decoder = MessageDecoder()
        self.items_send, self.items = trio.open_memory_channel[object](math.inf)
        self.prompt = "p-1"

    async def send_raw(self, data: bytes) -> None:
        await self.conn.send_data(self.stream_id, data)

    async def send(self, nova_event_json: bytes) -> None:
        inner = ev.encode_input_chunk(nova_event_json)
        await self.send_raw(self.signer.sign(inner, int(time.time() * 1000)))

    async def end_input(self) -> None:
        await self.send_raw(self.signer.sign_end(int(time.time() * 1000)))
        self.conn.h2.end_stream(self.stream_id)
        await self.conn.flush()

    async def next(self) -> object:
        with trio.fail_after(10):
            return await self.items.receive()

    async def until(self, predicate: Any) -> list[object]:
        seen: list[object] = []
        while True:
            item = await self.next()
            seen.append(item)
            if predicate(item):
                return seen

    def on_data(self, data: bytes) -> None:
        if self.status != 200:
            self.body += data
            return
        try:
            messages = self.decoder.feed(data)
        except EventStreamError as exc:
            self.items_send.send_nowait(exc)
            return
        for message in messages:
            try:
                self.items_send.send_nowait(parse_output_message(message))
            except SonicStreamError as exc:
                self.items_send.send_nowait(exc)

    # Conversation helpers -------------------------------------------------------------

    async def start_session(
        self, system: str = "You are a test assistant.", tools: Sequence[ev.ToolSpec] = ()
    ) -> None:
        await self.send(ev.session_start(endpointing_sensitivity="MEDIUM"))
        await self.send(
            ev.prompt_start(
                prompt_name=self.prompt, voice_id="tiffany", output_sample_rate=RATE_OUT,
                tools=tools,
            )
        )  # fmt: skip
        await self.send(
            ev.text_content_start(
                prompt_name=self.prompt, content_name="sys", role="SYSTEM", interactive=False
            )
        )
        await self.send(ev.text_input(prompt_name=self.prompt, content_name="sys", content=system))
        await self.send(ev.content_end(prompt_name=self.prompt, content_name="sys"))
        await self.send(
            ev.audio_content_start(prompt_name=self.prompt, content_name="mic", sample_rate=RATE_IN)
        )

    async def send_audio(self, pcm: bytes) -> None:
        for i in range(0, len(pcm), CHUNK):
            await self.send(
                ev.audio_input(prompt_name=self.prompt, content_name="mic", pcm=pcm[i : i + CHUNK])
            )

    async def close_session(self) -> None:
        await self.send(ev.content_end(prompt_name=self.prompt, content_name="mic"))
        await self.send(ev.prompt_end(prompt_name=self.prompt))
        await self.send(ev.session_end())
        await self.end_input()


@attrs.frozen
class Ended:
    """The server ended its side of the stream."""


@attrs.frozen
class Reset:
    """The server reset the stream."""

    code: int


@attrs.frozen
class ConnectionGone:
    """The connection ended (GOAWAY or EOF)."""


class MiniConnection:
    """One TLS connection speaking HTTP/2 as a client."""

    def __init__(self, tls: trio.SSLStream[trio.SocketStream], authority: str) -> None:
        self.tls = tls
        self.authority = authority
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.streams: dict[int, TestStream] = {}
        self.lock = trio.Lock()
        self.window = trio.Event()
        self.goaway = trio.Event()

    async def flush(self) -> None:
        async with self.lock:
            data = self.h2.data_to_send()
            if data:
                await self.tls.send_all(data)

    async def send_data(self, stream_id: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            window = min(
                self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size
            )
            if window <= 0:
                # Take the event before awaiting anything, or an update could be missed.
                updated = self.window
                await self.flush()
                await updated.wait()
                continue
            self.h2.send_data(stream_id, view[:window].tobytes())
            view = view[window:]
        await self.flush()

    async def open_stream(
        self, *, path: str | None = None, creds: Credentials = CREDS
    ) -> TestStream:
        path = path or request_path(MODEL)
        signed = sign_request(
            credentials=creds,
            region="us-east-1",
            host=self.authority,
            path=path,
            now=datetime.now(UTC),
        )
        stream_id = self.h2.get_next_available_stream_id()
        headers = [
            (":method", "POST"),
            (":scheme", "https"),
            (":authority", self.authority),
            (":path", path),
        ]
        self.h2.send_headers(stream_id, headers + list(signed.headers))
        signer = EventSigner(credentials=creds, region="us-east-1", seed_signature=signed.signature)
        stream = TestStream(self, stream_id, signer)
        self.streams[stream_id] = stream
        await self.flush()
        with trio.fail_after(10):
            while stream.status is None:
                item = await stream.items.receive()
                if isinstance(item, ConnectionGone):
                    raise AssertionError("connection closed before the response")
        return stream

    async def reader(self) -> None:
        while True:
            try:
                data = await self.tls.receive_some(65536)
            except trio.BrokenResourceError:
                break  # the server dropped the connection (GOAWAY/abort tests)
            if not data:
                break
            for event in self.h2.receive_data(data):
                self.dispatch(event)
            await self.flush()
        for stream in self.streams.values():
            stream.items_send.send_nowait(ConnectionGone())

    def dispatch(self, event: h2.events.Event) -> None:
        stream = self.streams.get(getattr(event, "stream_id", 0) or 0)
        if isinstance(event, h2.events.ResponseReceived) and stream is not None:
            stream.headers = {str(k): str(v) for k, v in event.headers or ()}
            stream.status = int(stream.headers[":status"])
            stream.items_send.send_nowait("headers")
        elif isinstance(event, h2.events.DataReceived) and stream is not None:
            self.h2.acknowledge_received_data(
                event.flow_controlled_length or 0, event.stream_id or 0
            )
            stream.on_data(bytes(event.data or b""))
        elif isinstance(event, h2.events.StreamEnded) and stream is not None:
            stream.items_send.send_nowait(Ended())
        elif isinstance(event, h2.events.StreamReset) and stream is not None:
            stream.items_send.send_nowait(Reset(int(event.error_code or 0)))
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            self.window.set()
            self.window = trio.Event()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway.set()


@asynccontextmanager
async def connect(emulator: Emulator | tuple[str, bytes]) -> AsyncIterator[MiniConnection]:
    """Connect to an in-process emulator or to ``(url, ca_pem)``."""
    raw_url, ca_pem = emulator if isinstance(emulator, tuple) else (emulator.url, emulator.ca_pem)
    url = urlsplit(raw_url)
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    ctx.set_alpn_protocols(["h2"])
    tcp = await trio.open_tcp_stream(url.hostname or "", url.port or 443)
    tls = trio.SSLStream(tcp, ctx, server_hostname=url.hostname)
    await tls.do_handshake()
    assert tls.selected_alpn_protocol() == "h2"
    conn = MiniConnection(tls, url.netloc)
    conn.h2.initiate_connection()
    await conn.flush()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.reader)
            try:
                yield conn
            finally:
                nursery.cancel_scope.cancel()
    finally:
        # Close only after the reader has stopped, so it never sees the close as an error.
        with trio.move_on_after(1, shield=True):
            await tls.aclose()


# --- tests ----------------------------------------------------------------------------------
