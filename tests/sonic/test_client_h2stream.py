"""H2Stream on its own, over a scripted StreamLink: it needs no connection, splits a send
by what the link takes, waits for a window when the link takes nothing, acknowledges
inbound data only when consumed, and maps a closed or failed stream to errors."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from h2.errors import ErrorCodes

from actors.errors import LocalProtocolError, SonicConnectionError, SonicStreamRefused
from actors.sonic.h2stream import H2Stream


class ScriptedLink:
    """A StreamLink that takes at most ``window`` bytes per send and records every call."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.frames: list[tuple[bytes, bool]] = []
        self.acknowledged: list[int] = []
        self.resets: list[ErrorCodes] = []
        self.released: list[int] = []
        self.closed_in_h2 = False
        self.window_waits = 0
        self.passes = 0

    def send_some(self, stream_id: int, data: bytes | memoryview, end_stream: bool) -> int | None:
        if self.closed_in_h2:
            return None
        if not data:
            if end_stream:
                self.frames.append((b"", True))
            return 0
        size = min(self.window, len(data))
        if size:
            self.window -= size
            self.frames.append((bytes(data[:size]), end_stream and size == len(data)))
        return size

    async def wait_send_window(self, stream_lot: trio.lowlevel.ParkingLot) -> None:
        self.window_waits += 1
        await stream_lot.park()

    def pass_window(self) -> None:
        self.passes += 1

    async def wait_writable(self) -> None:
        await trio.lowlevel.checkpoint()

    def acknowledge(self, stream_id: int, size: int) -> None:
        self.acknowledged.append(size)

    def reset_stream(self, stream_id: int, error_code: ErrorCodes) -> None:
        self.resets.append(error_code)

    def release_stream(self, stream_id: int, unread: int) -> None:
        self.released.append(unread)


async def test_send_is_split_by_the_window_and_resumes_when_it_grows(
    autojump_clock: trio.abc.Clock,
) -> None:
    link = ScriptedLink(window=4)
    stream = H2Stream(link, 1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.send_data, b"abcdefghij")
        await trio.testing.wait_all_tasks_blocked()
        assert link.frames == [(b"abcd", False)]
        assert link.window_waits == 1
        link.window = 100
        stream.wake_sender()
    assert link.frames == [(b"abcd", False), (b"efghij", False)]
    assert link.passes == 1  # the connection window is handed on once the send is over
    await stream.end_stream()
    assert link.frames[-1] == (b"", True)
    with pytest.raises(LocalProtocolError, match="already ended"):
        await stream.send_data(b"more")


async def test_inbound_data_is_acknowledged_only_when_taken() -> None:
    link = ScriptedLink(window=0)
    stream = H2Stream(link, 1)
    stream.on_response(200, ((":status", "200"),))
    stream.on_data(b"one", 3)
    stream.on_data(b"", 9)  # padding only: acknowledged, never returned
    stream.on_data(b"two", 3)
    assert link.acknowledged == []
    assert stream.buffered_bytes == 15
    assert await stream.receive_response() == (200, ((":status", "200"),))
    assert await stream.receive_data() == b"one"
    assert link.acknowledged == [3]
    assert await stream.receive_data() == b"two"
    assert link.acknowledged == [3, 9, 3]
    stream.on_end()
    assert await stream.receive_data() == b""


async def test_a_failed_stream_raises_for_senders_and_readers() -> None:
    link = ScriptedLink(window=100)
    stream = H2Stream(link, 3)
    stream.on_data(b"kept", 4)
    stream.fail(SonicStreamRefused("refused"))
    with pytest.raises(SonicStreamRefused):
        await stream.send_data(b"x")
    assert await stream.receive_data() == b"kept"  # queued data is still delivered
    with pytest.raises(SonicStreamRefused):
        await stream.receive_data()
    stream.release()
    assert link.resets == []  # nothing to reset: the server already closed it
    assert link.released == [0]


async def test_closed_in_h2_maps_to_a_connection_error_and_release_resets() -> None:
    link = ScriptedLink(window=100)
    stream = H2Stream(link, 5)
    link.closed_in_h2 = True
    with pytest.raises(SonicConnectionError, match="closed by the server"):
        await stream.send_data(b"x")
    link.closed_in_h2 = False
    stream.on_data(b"unread", 6)
    stream.release()
    assert link.resets == [ErrorCodes.CANCEL]
    assert link.released == [6]  # the unread window goes back with the slot
    with pytest.raises(LocalProtocolError, match="released"):
        await stream.send_data(b"x")
