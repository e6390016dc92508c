"""The Sonic client's costs, measured against the emulator running as a subprocess.

Prints, for the client process only (the emulator's CPU is read from /proc separately):

1. throughput: signed ``audioInput`` events per client CPU-second, pushed as fast as flow
   control allows over ``--streams`` streams (goal: >= 20,000 per core). Measured twice:
   with the Nova JSON prebuilt (client cost alone: chunk wrapping, signing, framing, h2),
   and with ``events.audio_input`` building each event (what a call pays in total);
2. memory and CPU per open stream: ``--idle-streams`` sessions opened and idle, then the same
   streams sending 32 ms of audio at real time (a phone call's load) for ``--seconds``;
3. time to open a stream on a warm connection (request signed, HEADERS sent, 200 received),
   wall clock and client CPU, over ``--opens`` sequential opens.

    .venv/bin/python bench/sonic_client.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trio

from actors.sonic import events as ev
from actors.sonic.connection import ConnectionConfig
from actors.sonic.credentials import StaticCredentialsProvider
from actors.sonic.pool import open_sonic_client
from actors.sonic.signing import Credentials
from actors.sonic.stream import SonicClient, SonicStream

CREDS = Credentials("AKIDBENCHCLIENT", "bench-client-secret")
PROMPT = "p-1"
RATE = 16000
CHUNK = bytes(1024)  # 32 ms of 16 kHz PCM16 silence: no turn is triggered


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes() -> int:
    """Resident set size of this process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def start_emulator() -> tuple[subprocess.Popen[str], str, str]:
    env = dict(os.environ)
    env.update(AWS_ACCESS_KEY_ID=CREDS.access_key_id, AWS_SECRET_ACCESS_KEY=CREDS.secret_access_key)
    command = [sys.executable, "-m", "sessions.cli", "emulator", "--listen", "127.0.0.1:0"]
    command += ["--idle-timeout", "3600", "--session-limit", "3600"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    line = json.loads(proc.stdout.readline())
    return proc, line["url"], line["ca_file"]


async def serve_sink(ca_path: str) -> None:
    """A discard server (``--serve-sink``): TLS + h2, 200 at once, 16 MiB windows, every
    DATA byte acknowledged and dropped, nothing verified. It isolates the client's own cost
    from the emulator's (which verifies every signature and runs the conversation)."""
    import ssl

    import h2.config
    import h2.connection
    import h2.events
    import h2.settings
    import trustme

    ca = trustme.CA()
    ca.cert_pem.write_to_path(ca_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    context.set_alpn_protocols(["h2"])
    window = 16 << 20

    async def handle(stream: trio.SSLStream[trio.SocketStream]) -> None:
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1000,
            },
        )
        conn.initiate_connection()
        conn.increment_flow_control_window(window)
        try:
            await stream.send_all(conn.data_to_send())
            while data := await stream.receive_some(1 << 18):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        conn.send_headers(
                            event.stream_id,
                            [
                                (":status", "200"),
                                ("content-type", "application/vnd.amazon.eventstream"),
                            ],
                        )
                    elif isinstance(event, h2.events.DataReceived) and event.stream_id:
                        conn.acknowledge_received_data(
                            event.flow_controlled_length or 0, event.stream_id
                        )
                    elif isinstance(event, h2.events.StreamEnded) and event.stream_id:
                        conn.end_stream(event.stream_id)
                if out := conn.data_to_send():
                    await stream.send_all(out)
        except (trio.BrokenResourceError, h2.exceptions.H2Error):
            pass

    listeners = await trio.open_ssl_over_tcp_listeners(0, context, host="127.0.0.1")
    port = listeners[0].transport_listener.socket.getsockname()[1]  # type: ignore[attr-defined]
    print(json.dumps({"url": f"https://127.0.0.1:{port}", "ca_file": ca_path}), flush=True)
    await trio.serve_listeners(handle, listeners)


def start_sink() -> tuple[subprocess.Popen[str], str, str]:
    ca_path = f"/tmp/sonic-bench-sink-{os.getpid()}.pem"
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve-sink", ca_path], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = json.loads(proc.stdout.readline())
    return proc, line["url"], line["ca_file"]


async def start_session(stream: SonicStream) -> None:
    await stream.send(ev.session_start())
    await stream.send(
        ev.prompt_start(prompt_name=PROMPT, voice_id="tiffany", output_sample_rate=8000)
    )
    await stream.send(
        ev.text_content_start(
            prompt_name=PROMPT, content_name="sys", role="SYSTEM", interactive=False
        )
    )
    await stream.send(ev.text_input(prompt_name=PROMPT, content_name="sys", content="Bench."))
    await stream.send(ev.content_end(prompt_name=PROMPT, content_name="sys"))
    await stream.send(
        ev.audio_content_start(prompt_name=PROMPT, content_name="mic", sample_rate=RATE)
    )


async def drain(stream: SonicStream) -> None:
    async for _ in stream:
        pass


async def throughput(
    client: SonicClient, emulator_pid: int, streams: int, per_stream: int, prebuilt: bool
) -> dict[str, float]:
    event = ev.audio_input(prompt_name=PROMPT, content_name="mic", pcm=CHUNK)

    async def pump(task_status: trio.TaskStatus[None]) -> None:
        async with client.open_stream() as stream, trio.open_nursery() as nursery:
            nursery.start_soon(drain, stream)
            await start_session(stream)
            task_status.started()
            await go.wait()
            for _ in range(per_stream):
                if prebuilt:
                    await stream.send(event)
                else:
                    await stream.send(
                        ev.audio_input(prompt_name=PROMPT, content_name="mic", pcm=CHUNK)
                    )
            nursery.cancel_scope.cancel()

    go = trio.Event()
    async with trio.open_nursery() as nursery:
        for _ in range(streams):
            await nursery.start(pump)
        times0 = os.times()
        cpu0, emu0, wall0 = time.process_time(), cpu_seconds(emulator_pid), time.perf_counter()
        go.set()
    cpu = time.process_time() - cpu0
    times1 = os.times()
    emu = cpu_seconds(emulator_pid) - emu0
    wall = time.perf_counter() - wall0
    total = streams * per_stream
    return {
        "events": total,
        "client_cpu_s": cpu,
        "client_user_s": times1.user - times0.user,
        "client_sys_s": times1.system - times0.system,
        "events_per_client_cpu_s": total / cpu,
        "events_per_client_user_cpu_s": total / (times1.user - times0.user),
        "emulator_cpu_s": emu,
        "wall_s": wall,
        "events_per_wall_s": total / wall,
    }


async def per_stream_costs(client: SonicClient, count: int, seconds: float) -> dict[str, float]:
    event = ev.audio_input(prompt_name=PROMPT, content_name="mic", pcm=CHUNK)
    ready = 0
    opened = trio.Event()
    talk = trio.Event()
    done = trio.Event()

    async def call() -> None:
        nonlocal ready
        async with client.open_stream() as stream, trio.open_nursery() as nursery:
            nursery.start_soon(drain, stream)
            await start_session(stream)
            ready += 1
            if ready == count:
                opened.set()
            await talk.wait()
            start = trio.current_time()
            for i in range(round(seconds / 0.032)):
                await trio.sleep_until(start + i * 0.032)
                await stream.send(event)
            await done.wait()
            nursery.cancel_scope.cancel()

    rss0 = rss_bytes()
    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(call)
        await opened.wait()
        await trio.sleep(0.5)
        rss1 = rss_bytes()
        cpu0 = time.process_time()
        await trio.sleep(seconds)
        idle_cpu = time.process_time() - cpu0
        talk.set()
        cpu0 = time.process_time()
        await trio.sleep(seconds)
        busy_cpu = time.process_time() - cpu0
        done.set()
    return {
        "streams": count,
        "rss_per_stream_kib": (rss1 - rss0) / count / 1024,
        "idle_cpu_per_stream_pct": 100 * idle_cpu / seconds / count,
        "realtime_cpu_per_stream_pct": 100 * busy_cpu / seconds / count,
        "realtime_calls_per_core": count * seconds / busy_cpu if busy_cpu else float("inf"),
    }


async def open_latency(client: SonicClient, opens: int) -> dict[str, float]:
    async with client.open_stream():
        pass  # warm the connection
    walls: list[float] = []
    cpu0 = time.process_time()
    for _ in range(opens):
        start = time.perf_counter()
        async with client.open_stream() as stream:
            walls.append(time.perf_counter() - start)
            assert stream.status == 200
    cpu = time.process_time() - cpu0
    walls.sort()
    return {
        "opens": opens,
        "wall_ms_p50": 1000 * statistics.median(walls),
        "wall_ms_p99": 1000 * walls[int(0.99 * (len(walls) - 1))],
        "client_cpu_ms_per_open_and_close": 1000 * cpu / opens,
    }


async def sink_throughput(args: argparse.Namespace) -> dict[str, float]:
    proc, url, ca_file = start_sink()
    try:
        async with open_sonic_client(
            region="us-east-1",
            endpoint_url=url,
            ca_file=ca_file,
            credentials_provider=StaticCredentialsProvider(CREDS),
            max_connections=args.connections,
        ) as client:
            return await throughput(
                client, proc.pid, args.streams, args.events // args.streams, prebuilt=True
            )
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def main(args: argparse.Namespace) -> None:
    if args.serve_sink:
        await serve_sink(args.serve_sink)
        return
    sink = await sink_throughput(args)
    proc, url, ca_file = start_emulator()
    try:
        async with open_sonic_client(
            region="us-east-1",
            endpoint_url=url,
            ca_file=ca_file,
            credentials_provider=StaticCredentialsProvider(CREDS),
            max_connections=args.connections,
            connection_config=ConnectionConfig(write_coalesce_delay=args.coalesce),
        ) as client:
            results: dict[str, Any] = {"throughput_into_discard_server": sink}
            results["throughput_prebuilt_json"] = await throughput(
                client, proc.pid, args.streams, args.events // args.streams, prebuilt=True
            )
            results["throughput_building_json"] = await throughput(
                client, proc.pid, args.streams, args.events // args.streams, prebuilt=False
            )
            results["per_stream"] = await per_stream_costs(client, args.idle_streams, args.seconds)
            results["open_on_warm_connection"] = await open_latency(client, args.opens)
            results["pool"] = client.pool.statistics()
        for name, figures in results.items():
            print(f"{name}:")
            for key, value in figures.items():
                shown = f"{value:,.3f}" if isinstance(value, float) else f"{value:,}"
                print(f"  {key:36} {shown}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--streams", type=int, default=20, help="streams in the throughput runs")
    parser.add_argument("--events", type=int, default=60_000, help="events per throughput run")
    parser.add_argument(
        "--idle-streams", type=int, default=100, help="streams for per-stream costs"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="idle and real-time phases")
    parser.add_argument("--opens", type=int, default=300, help="sequential opens timed")
    parser.add_argument("--connections", type=int, default=2, help="pool size")
    parser.add_argument(
        "--coalesce", type=float, default=0.0, help="ConnectionConfig.write_coalesce_delay"
    )
    parser.add_argument("--serve-sink", metavar="CA_PATH", help=argparse.SUPPRESS)
    trio.run(main, parser.parse_args())
