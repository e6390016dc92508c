"""CPU cost of the Sonic client's send path alone: ``H2Stream.send_data`` into a
``Connection`` whose socket is an in-memory sink (no TLS, no signing, no server work).

Isolates what the connection and stream modules add per DATA frame, which the end-to-end
``bench/sonic_client.py`` figures bury under signing, TLS and a loaded machine's noise.
Prints microseconds of process CPU per send, for each of ``--rounds`` rounds and the best.

    .venv/bin/python bench/sonic_send_path.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import h2.config
import h2.connection
import h2.settings
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors.sonic.connection import Connection, ConnectionConfig

HEADERS = [(":method", "POST"), (":scheme", "https"), (":authority", "x"), (":path", "/")]
BIG_WINDOW = 2**31 - 1


def server_preface() -> bytes:
    """A server's SETTINGS with the largest windows, so no send ever waits for one."""
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    server.local_settings = h2.settings.Settings(
        client=False, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: BIG_WINDOW}
    )
    server.initiate_connection()
    server.increment_flow_control_window(BIG_WINDOW - 65535)
    return server.data_to_send()


class SinkStream(trio.abc.Stream):
    """Sends the server preface once, then never more; every byte written is dropped."""

    def __init__(self) -> None:
        self._preface: bytes | None = server_preface()
        self.written = 0

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        self.written += len(data)

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._preface is not None:
            preface, self._preface = self._preface, None
            await trio.lowlevel.checkpoint()
            return preface
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


async def one_round(sends: int, size: int) -> float:
    async def opener() -> trio.abc.Stream:
        await trio.lowlevel.checkpoint()
        return SinkStream()

    config = ConnectionConfig(keepalive_interval=None, stream_window=1 << 20)
    async with trio.open_nursery() as nursery:
        conn = Connection(opener, config)
        await nursery.start(conn.run)
        stream = conn.open_stream(HEADERS)
        data = bytes(size)
        start = time.process_time()
        for _ in range(sends):
            await stream.send_data(data)
        elapsed = time.process_time() - start
        stream.release()
        conn.close()
    return elapsed / sends * 1e6


async def main(args: argparse.Namespace) -> None:
    results = []
    for index in range(args.rounds):
        micros = await one_round(args.sends, args.size)
        results.append(micros)
        print(f"round {index + 1}: {micros:.2f} us CPU per send_data")
    print(f"best: {min(results):.2f} us CPU per send_data ({args.size}-byte DATA)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sends", type=int, default=40_000, help="send_data calls per round")
    parser.add_argument("--size", type=int, default=1500, help="bytes per send (~1 event)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the best is reported")
    trio.run(main, parser.parse_args())
