"""The call path alone: CPU per call-second of N calls in one process, no sockets, no other
processes, so the figure is the daemon's call code only and other load on the machine
changes it little (it is ``time.process_time()``, this process's CPU).

Reproduce (about 15 s):

    .venv/bin/python bench/call_path.py                    # 50 calls, 10 s
    .venv/bin/python bench/call_path.py --calls 100 --seconds 20

Each call is the daemon's ``CallChannel`` on a memory WebSocket pair. The carrier side sends a
Twilio media frame every 20 ms and reads everything; the Sonic side is a scripted stream that
takes the audioInput events and answers with 100 ms of assistant audio every 100 ms (as the
emulator does), then a mark-worthy end of answer every 2 s. Both directions carry real-time
audio, so the figure covers caller audio in, assistant audio out, framing and marks. Run it
in two trees (cwd decides which code is imported) to compare changes to the call path; both
must share this script's view of the settings and prompt-cache APIs. ``--set chunk_ms=64``
(any integer ``CallSettings`` field) compares settings in one tree.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio
import trio.testing
from trio_websocket import ConnectionClosed, wrap_client_stream, wrap_server_stream

sys.path.insert(0, str(Path.cwd()))

from actors.sonic import output
from devkit.fake_prompt_store import FakePromptStore
from devkit.simcall import TwilioCaller

IDS: dict[str, Any] = {"session_id": "s", "prompt_name": "p", "completion_id": "c"}
ANSWER_EVENT = bytes(1600)  # 100 ms of PCM16 at 8 kHz


class ScriptedStream:
    """Takes input events; yields 100 ms of assistant audio every 100 ms, in 2 s answers."""

    credentials_deadline: float | None = None
    credentials_expiry: None = None

    def __init__(self) -> None:
        self.events_in = 0

    async def send(self, nova_event_json: bytes) -> None:
        self.events_in += 1
        await trio.lowlevel.checkpoint()

    async def wait_response(self) -> None:
        await trio.lowlevel.checkpoint()

    def __aiter__(self) -> AsyncIterator[output.OutputEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[output.OutputEvent]:
        n = 0
        while True:
            cid = f"a{n}"
            yield output.ContentStarted(
                **IDS, content_id=cid, kind=output.ContentKind.AUDIO, role="ASSISTANT"
            )
            for _ in range(20):
                await trio.sleep(0.1)
                yield output.AudioOutput(**IDS, content_id=cid, pcm=ANSWER_EVENT)
            yield output.ContentEnded(
                **IDS, content_id=cid, kind=output.ContentKind.AUDIO, role="ASSISTANT",
                stop_reason="END_TURN",
            )  # fmt: skip
            yield output.CompletionEnded(**IDS, stop_reason="END_TURN")
            n += 1


class ScriptedSonic:
    """A Sonic client whose streams are :class:`ScriptedStream`."""

    @asynccontextmanager
    async def open_stream(self, *, wait_for_response: bool = True) -> AsyncIterator[Any]:
        await trio.lowlevel.checkpoint()
        yield ScriptedStream()


async def one_call(deps: Any, metrics: Any, seconds: float, counts: list[int]) -> None:
    from sessions.call import CallChannel
    from sessions.dialects.twilio import TwilioDialect

    client_stream, server_stream = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        accepted: list[Any] = []
        ready = trio.Event()

        async def serve() -> None:
            request = await wrap_server_stream(nursery, server_stream)
            accepted.append(await request.accept())
            ready.set()

        nursery.start_soon(serve)
        client = await wrap_client_stream(
            nursery,
            client_stream,  # type: ignore[arg-type]  # any trio Stream works; the hint is narrow
            "bench",
            "/twilio/esther",
        )
        await ready.wait()
        caller = TwilioCaller(stream_sid="MZ00", call_sid="CA00")

        async def run_call() -> None:
            with metrics.call("twilio") as cm:
                await CallChannel(accepted[0], TwilioDialect(path="/twilio/esther"), deps, cm).run()

        async def read() -> None:
            try:
                while True:
                    await client.get_message()
                    counts[1] += 1
            except ConnectionClosed:
                pass

        nursery.start_soon(run_call)
        nursery.start_soon(read)
        await client.send_message(caller.connected())
        await client.send_message(caller.start())
        frame = bytes(range(160))
        deadline = trio.current_time()
        for _ in range(int(seconds * 50)):
            deadline += 0.02
            await client.send_message(caller.media(frame))
            counts[0] += 1
            await trio.sleep_until(deadline)
        await client.send_message(caller.stop())
        await trio.sleep(0.5)
        nursery.cancel_scope.cancel()


async def main(calls: int, seconds: float, overrides: dict[str, Any] | None = None) -> None:
    from actors.prompt_cache import open_prompt_cache
    from actors.prompt_fetch import PromptFetcher
    from sessions.call_records import CallDeps
    from sessions.config import CallSettings
    from sessions.logs import open_call_log
    from sessions.metrics import Metrics

    store = FakePromptStore()
    store.put("esther", "You are Esther.")
    metrics = Metrics(process_metrics=False)
    counts = [0, 0]
    async with (
        open_prompt_cache(
            store,
            ttl=300,
            stale_if_error=60,
            negative_ttl=5,
            max_entries=4,
            fetch_timeout=5.0,
            refresh_retry_interval=1.0,
        ) as c,
        open_call_log(None) as call_log,
    ):
        deps = CallDeps(
            prompts=PromptFetcher(c, timeout=5.0),
            sonic=ScriptedSonic(),
            metrics=metrics,
            call_log=call_log,
            settings=attrs.evolve(CallSettings(), **(overrides or {})),
        )
        cpu0, wall0 = time.process_time(), time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(calls):
                nursery.start_soon(one_call, deps, metrics, seconds, counts)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    call_seconds = calls * seconds
    print(
        f"call path @ {calls} calls x {seconds:.0f} s: CPU {cpu:.2f} s in {wall:.1f} s wall = "
        f"{cpu / call_seconds * 1000:.2f} ms per call-second; "
        f"frames in {counts[0]}, messages out {counts[1]} "
        f"({cpu / max(1, counts[0] + counts[1]) * 1e6:.1f} µs per frame either way)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=INT",
        help="a CallSettings field for every call (chunk_ms=64, audio_message_ms=100)",
    )
    args = parser.parse_args()
    fields = dict(item.split("=", 1) for item in args.set)
    trio.run(main, args.calls, args.seconds, {k: int(v) for k, v in fields.items()})
