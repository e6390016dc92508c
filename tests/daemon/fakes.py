"""Fakes for the call channel: a scripted Sonic client and a Twilio peer over memory streams.

No sockets, no threads: everything runs under the autojump clock.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio
import trio.lowlevel
import trio.testing
from trio_websocket import WebSocketConnection, wrap_client_stream, wrap_server_stream

from actors.errors import SonicConnectionError
from actors.prompt_cache import PromptCache, open_prompt_cache
from actors.prompt_fetch import PromptFetcher
from actors.sonic import output
from actors.sonic.session import SonicSession
from devkit.fake_prompt_store import FakePromptStore
from devkit.simcall import TwilioCaller


@attrs.define(eq=False)
class FakeSonicStream:
    """Records what the call sends; yields what the test feeds through :attr:`feed`."""

    sent: list[dict[str, Any]] = attrs.field(factory=list)
    closed: bool = False
    _feed_send: trio.MemorySendChannel[output.OutputEvent | Exception] = attrs.field(init=False)
    _feed_receive: trio.MemoryReceiveChannel[output.OutputEvent | Exception] = attrs.field(
        init=False
    )
    audio_sent: trio.Event = attrs.field(factory=trio.Event)

    def __attrs_post_init__(self) -> None:
        self._feed_send, self._feed_receive = trio.open_memory_channel(1000)

    dead: bool = False
    audio_send_delay: float = 0.0
    """Seconds each ``audioInput`` send takes (a Sonic stream that is not keeping up)."""
    credentials_deadline: float | None = None
    """On trio's clock, as :class:`~actors.sonic.stream.SonicStream` gives it."""

    def kill(self) -> None:
        """The server ended this stream: later sends fail as they would on a real one."""
        self.dead = True

    async def send(self, nova_event_json: bytes) -> None:
        if self.closed:
            raise AssertionError("send after close")
        if self.dead or self.refused is not None:
            await trio.lowlevel.checkpoint()
            raise SonicConnectionError("stream closed by the server")
        if self.audio_send_delay and b'"audioInput"' in nova_event_json:
            await trio.sleep(self.audio_send_delay)
        self.sent.append(json.loads(nova_event_json)["event"])
        if "audioInput" in self.sent[-1]:
            self.audio_sent.set()
        await trio.lowlevel.checkpoint()

    refused: Exception | None = None
    """The HTTP answer was a refusal: sends fail as on a reset stream, wait_response raises."""

    async def wait_response(self) -> None:
        """The fake answers at once: 200, or ``refused``."""
        await trio.lowlevel.checkpoint()
        if self.refused is not None:
            raise self.refused

    def feed(self, item: output.OutputEvent | Exception) -> None:
        self._feed_send.send_nowait(item)

    def end(self) -> None:
        self._feed_send.close()

    def __aiter__(self) -> AsyncIterator[output.OutputEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[output.OutputEvent]:
        async for item in self._feed_receive:
            if isinstance(item, Exception):
                raise item
            yield item

    def names(self) -> list[str]:
        return [next(iter(e)) for e in self.sent]

    def audio_pcm(self) -> bytes:
        return b"".join(
            base64.b64decode(e["audioInput"]["content"]) for e in self.sent if "audioInput" in e
        )


@attrs.define(eq=False)
class FakeSonic:
    """A Sonic client whose streams are :class:`FakeSonicStream`; opening may be slow or fail."""

    open_delay: float = 0.0
    open_error: Exception | None = None
    credentials_lifetime: float | None = None
    """Seconds each stream's credentials stay valid after it opens (``None``: forever)."""
    refuse_with: Exception | None = None
    audio_send_delay: float = 0.0
    """Given to each stream (:attr:`FakeSonicStream.audio_send_delay`)."""
    streams: list[FakeSonicStream] = attrs.field(factory=list)
    open_times: list[float] = attrs.field(factory=list)
    """``trio.current_time()`` when each stream opened."""
    opened: trio.Event = attrs.field(factory=trio.Event)

    @asynccontextmanager
    async def open_stream(
        self, *, wait_for_response: bool = True
    ) -> AsyncIterator[FakeSonicStream]:
        await trio.sleep(self.open_delay)
        if self.open_error is not None:
            raise self.open_error
        lifetime = self.credentials_lifetime
        stream = FakeSonicStream(
            credentials_deadline=None if lifetime is None else trio.current_time() + lifetime
        )
        stream.refused = self.refuse_with
        stream.audio_send_delay = self.audio_send_delay
        self.streams.append(stream)
        self.open_times.append(trio.current_time())
        self.opened.set()
        try:
            yield stream
        finally:
            stream.closed = True


@asynccontextmanager
async def open_fetcher(store: FakePromptStore) -> AsyncIterator[tuple[PromptFetcher, PromptCache]]:
    async with open_prompt_cache(
        store,
        ttl=300,
        stale_if_error=60,
        negative_ttl=5,
        max_entries=16,
        fetch_timeout=5.0,
        refresh_retry_interval=1.0,
    ) as cache:
        yield PromptFetcher(cache, timeout=5.0), cache


@asynccontextmanager
async def ws_pair(
    *, lockstep: bool = False
) -> AsyncIterator[tuple[WebSocketConnection, WebSocketConnection]]:
    """A connected (server, client) WebSocket pair over memory streams.

    ``lockstep``: no buffering between the two ends, so a side that stops reading stalls
    the other's writes, as a slow carrier's full TCP window does.
    """
    pair = trio.testing.lockstep_stream_pair if lockstep else trio.testing.memory_stream_pair
    client_stream, server_stream = pair()
    async with trio.open_nursery() as nursery:
        server_request: list[Any] = []

        async def serve() -> None:
            request = await wrap_server_stream(nursery, server_stream)
            server_request.append(await request.accept())

        nursery.start_soon(serve)
        client = await wrap_client_stream(
            nursery,
            client_stream,  # type: ignore[arg-type]  # any trio Stream works; the hint is narrow
            "test",
            "/twilio/esther",
        )
        while not server_request:
            await trio.lowlevel.checkpoint()
        try:
            yield server_request[0], client
        finally:
            nursery.cancel_scope.cancel()


class TwilioPeer:
    """The carrier side of a Twilio Media Stream, scripted by a test.

    Messages come from the load harness's :class:`~devkit.simcall.TwilioCaller`, which
    speaks Twilio exactly as the daemon's dialect expects it.
    """

    def __init__(self, ws: WebSocketConnection, stream_sid: str = "MZ00", call_sid: str = "CA00"):
        self.ws = ws
        self.caller = TwilioCaller(stream_sid=stream_sid, call_sid=call_sid)
        self.received: list[dict[str, Any]] = []

    async def start(self) -> None:
        await self.ws.send_message(self.caller.connected())
        await self.ws.send_message(self.caller.start())

    async def media(self, payload: bytes) -> None:
        await self.ws.send_message(self.caller.media(payload))

    async def stop(self) -> None:
        await self.ws.send_message(self.caller.stop())

    async def receive_all(self) -> None:
        """Collect what the daemon sends until it closes the socket."""
        from trio_websocket import ConnectionClosed

        try:
            while True:
                self.received.append(json.loads(await self.ws.get_message()))
        except ConnectionClosed:
            pass

    def events(self, name: str) -> list[dict[str, Any]]:
        return [m for m in self.received if m.get("event") == name]

    def audio(self) -> bytes:
        return b"".join(base64.b64decode(m["media"]["payload"]) for m in self.events("media"))


def new_session(sonic: FakeSonic, **settings: Any) -> SonicSession:
    """A :class:`SonicSession` on ``sonic`` with the session tests' usual settings (Esther,
    8 kHz, the default voice and inference values); ``settings`` add to or replace them
    (``output_channel``, ``rotate_after``, ``recovery``, ``tools``...)."""
    usual: dict[str, Any] = {
        "system_prompt": "You are Esther.",
        "sample_rate": 8000,
        "voice_id": "matthew",
        "endpointing_sensitivity": None,
        "max_tokens": 1024,
        "top_p": 0.9,
        "temperature": 0.7,
    }
    return SonicSession(sonic, **(usual | settings))
