"""Load on the emulator: N concurrent streams with real-time caller audio and one turn each.

Runs ``novavoice emulator`` as a subprocess and drives it with the minimal h2 test client
(``tests/sonic/test_emulator_e2e.py``), each stream sending 32 ms audioInput events at real
time: 1 s of speech, then silence, so every stream gets a USER transcript and a 2 s reply.
Prints the emulator process's CPU use per wall second and per stream, and the events counted.

    .venv/bin/python bench/emulator_load.py --streams 200 --connections 4 --seconds 6
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import trio

from actors.sonic.output import AudioOutput, CompletionEnded
from devkit.emulator.raw_client import (
    CHUNK,
    CREDS,
    MiniConnection,
    TestStream,
    connect,
    silence,
    tone,
)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def one_call(conn: MiniConnection, seconds: float, results: dict[str, int]) -> None:
    stream: TestStream = await conn.open_stream()
    await stream.start_session()
    pcm = tone(1.0) + silence(seconds - 1.0)
    start = trio.current_time()

    async def drain() -> None:
        async for item in stream.items:
            if isinstance(item, AudioOutput):
                results["audio_chunks"] += 1
            elif isinstance(item, CompletionEnded):
                results["turns"] += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        for i, offset in enumerate(range(0, len(pcm), CHUNK)):
            await trio.sleep_until(start + i * 0.032)  # real time, as a phone call would
            await stream.send_audio(pcm[offset : offset + CHUNK])
            results["audio_events"] += 1
        await stream.close_session()
        await trio.sleep(0.5)
        nursery.cancel_scope.cancel()


async def drive(url: str, ca_pem: bytes, streams: int, connections: int, seconds: float,
                pid: int) -> None:  # fmt: skip
    results = {"audio_events": 0, "audio_chunks": 0, "turns": 0}
    cpu0, wall0 = cpu_seconds(pid), time.perf_counter()
    async with trio.open_nursery() as outer:
        for c in range(connections):
            share = streams // connections + (1 if c < streams % connections else 0)

            async def run_connection(share: int = share) -> None:
                async with connect((url, ca_pem)) as conn, trio.open_nursery() as calls:
                    for _ in range(share):
                        calls.start_soon(one_call, conn, seconds, results)

            outer.start_soon(run_connection)
    cpu, wall = cpu_seconds(pid) - cpu0, time.perf_counter() - wall0
    print(f"streams: {streams} over {connections} connections, {seconds:.0f} s of audio each")
    print(f"audioInput events sent: {results['audio_events']} "
          f"({results['audio_events'] / wall:.0f}/s), turns completed: {results['turns']}, "
          f"audioOutput chunks: {results['audio_chunks']}")  # fmt: skip
    print(f"emulator CPU: {cpu:.2f} s over {wall:.2f} s wall = {cpu / wall:.2f} cores; "
          f"{cpu / wall / streams * 1000:.2f} ms CPU per stream-second")  # fmt: skip


def main() -> int:
    """Run the load and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sessions.cli", "emulator", "--listen", "127.0.0.1:0",
         "--access-key-id", CREDS.access_key_id, "--secret-access-key", CREDS.secret_access_key,
         "--pause-scale", "0.3", "--time-to-first-audio", "0.2", "--reply-seconds", "2"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = json.loads(proc.stdout.readline())
        ca_pem = Path(line["ca_file"]).read_bytes()
        trio.run(drive, line["url"], ca_pem, args.streams, args.connections, args.seconds, proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
