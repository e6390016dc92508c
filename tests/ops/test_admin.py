"""The admin endpoint over a real loopback socket: routes, keep-alive, limits, isolation.

Real sockets mean real time: deadlines are short (0.5 s) and every wait is bounded by a
generous ``fail_after`` so a regression fails instead of hanging. The deadline's exact
timing is checked separately over memory streams with the autojump clock.
"""

from __future__ import annotations

import json
from functools import partial

import attrs
import h11
import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from actors.assistant_names import AssistantName
from sessions.admin import AdminLimits, AdminServer, Health, serve_admin
from sessions.metrics import Metrics
from tests.ops.conftest import AdminFixture, get, read_reply, read_until_eof, request

GUARD = 10  # seconds: only a hang reaches this


async def test_binds_port_zero_and_healthz_answers(admin: AdminFixture) -> None:
    assert admin.host == "127.0.0.1"
    assert admin.port > 0
    reply = await get(admin, "/healthz")
    assert reply.status == 200
    assert reply.body == b"ok\n"


async def test_readyz_follows_health(admin: AdminFixture) -> None:
    first = await get(admin, "/readyz")
    assert (first.status, first.body) == (503, b"not ready: starting\n")
    admin.health.set_ready()
    assert (await get(admin, "/readyz")).status == 200
    admin.health.set_not_ready("draining")
    reply = await get(admin, "/readyz")
    assert reply.status == 503
    assert reply.body == b"not ready: draining\n"
    # liveness is unaffected by readiness
    assert (await get(admin, "/healthz")).status == 200


async def test_metrics_exposition_parses_and_reflects_counts(admin: AdminFixture) -> None:
    m = admin.metrics
    m.refused("capacity")
    m.refused("capacity")
    m.sonic_stream_opens.inc()
    cm = m.call("twilio")
    cm.frames_in += 7
    reply = await get(admin, "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(reply.body.decode())}
    for name in (
        "novavoice_calls_active",
        "novavoice_calls_started",
        "novavoice_calls_ended",
        "novavoice_admission_refusals",
        "novavoice_frames",
        "novavoice_added_latency_seconds",
        "novavoice_event_loop_lag_seconds",
        "novavoice_time_to_first_audio_seconds",
        "process_resident_memory_bytes",
        "process_cpu_seconds",
    ):
        assert name in families, name
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    assert samples["novavoice_admission_refusals_total", (("reason", "capacity"),)] == 2
    assert samples["novavoice_sonic_stream_opens_total", ()] == 1
    assert samples["novavoice_calls_active", (("carrier", "twilio"),)] == 1
    key = ("novavoice_frames_total", (("carrier", "twilio"), ("direction", "in")))
    assert samples[key] == 7
    assert samples["process_resident_memory_bytes", ()] > 0


async def test_metrics_negotiates_openmetrics(admin: AdminFixture) -> None:
    reply = await get(admin, "/metrics", headers=[("accept", "application/openmetrics-text")])
    assert reply.headers["content-type"].startswith("application/openmetrics-text")
    assert reply.body.endswith(b"# EOF\n")


async def test_unknown_path_404_and_other_methods_405(admin: AdminFixture) -> None:
    assert (await get(admin, "/nope")).status == 404
    post = await get(admin, "/metrics", method="POST")
    assert post.status == 405
    assert post.headers["allow"] == "GET"
    head = await get(admin, "/healthz", method="HEAD")
    assert head.status == 405


async def test_keep_alive_serves_many_requests_on_one_connection(admin: AdminFixture) -> None:
    stream = await admin.connect()
    conn = h11.Connection(h11.CLIENT)
    with trio.fail_after(GUARD):
        async with stream:
            statuses = [(await request(stream, conn, t)).status for t in ("/healthz",) * 3]
            statuses.append((await request(stream, conn, "/nope")).status)
            statuses.append((await request(stream, conn, "/metrics")).status)
    assert statuses == [200, 200, 200, 404, 200]


async def test_connection_close_request_is_answered(admin: AdminFixture) -> None:
    # curl and most probes send "Connection: close"; h11 then ends in MUST_CLOSE, not DONE.
    stream = await admin.connect()
    with trio.fail_after(GUARD):
        async with stream:
            await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = await read_until_eof(stream)
    assert data.startswith(b"HTTP/1.1 200 ")
    assert data.endswith(b"ok\n")


async def test_oversized_head_is_431_and_server_keeps_serving(admin: AdminFixture) -> None:
    stream = await admin.connect()
    with trio.fail_after(GUARD):
        async with stream:
            big = b"x-filler: " + b"a" * 20_000 + b"\r\n"
            await stream.send_all(b"GET /healthz HTTP/1.1\r\nhost: a\r\n" + big + b"\r\n")
            reply = await read_until_eof(stream)
        assert reply.startswith(b"HTTP/1.1 431 ")
        assert (await get(admin, "/healthz")).status == 200


async def test_oversized_body_is_413(admin: AdminFixture) -> None:
    stream = await admin.connect()
    with trio.fail_after(GUARD):
        async with stream:
            await stream.send_all(
                b"GET /healthz HTTP/1.1\r\nhost: a\r\ncontent-length: 100000\r\n\r\n" + b"z" * 2000
            )
            reply = await read_until_eof(stream)
    assert reply.startswith(b"HTTP/1.1 413 ")


async def test_garbage_gets_400_and_a_reset_client_does_not_stop_the_server(
    admin: AdminFixture,
) -> None:
    with trio.fail_after(GUARD):
        stream = await admin.connect()
        async with stream:
            await stream.send_all(b"\x16\x03\x01 this is not http\r\n\r\n")
            assert (await read_until_eof(stream)).startswith(b"HTTP/1.1 400 ")
        # connect and vanish mid-request
        stream = await admin.connect()
        await stream.send_all(b"GET /hea")
        await trio.aclose_forcefully(stream)
        assert (await get(admin, "/healthz")).status == 200


async def test_slow_client_is_cut_off_and_others_are_served_meanwhile(
    admin: AdminFixture,
) -> None:
    slow = await admin.connect()
    with trio.fail_after(GUARD):
        async with slow:
            await slow.send_all(b"GET /healthz HTTP/1.1\r\nhost: a\r\n")  # never finished
            # while the slow one dawdles, another connection is answered
            assert (await get(admin, "/healthz")).status == 200
            reply = await read_until_eof(slow)
    assert reply.startswith(b"HTTP/1.1 408 ")


async def test_idle_keep_alive_connection_is_closed_silently(admin: AdminFixture) -> None:
    stream = await admin.connect()
    with trio.fail_after(GUARD):
        async with stream:
            assert (await request(stream, h11.Connection(h11.CLIENT), "/healthz")).status == 200
            assert await read_until_eof(stream) == b""


@pytest.mark.parametrize("limits", [AdminLimits(request_timeout=5, max_connections=1)])
async def test_connections_beyond_the_cap_get_503(admin: AdminFixture) -> None:
    holder = await admin.connect()
    with trio.fail_after(GUARD):
        async with holder:
            # the first connection is being served (keep-alive) when the second arrives
            assert (await request(holder, h11.Connection(h11.CLIENT), "/healthz")).status == 200
            assert (await get(admin, "/metrics")).status == 503
            # probes are still answered beyond the cap (finding 10 of issue 9)
            assert (await get(admin, "/healthz")).status == 200


@pytest.mark.parametrize("limits", [AdminLimits(request_timeout=5, max_connections=8)])
async def test_idle_sockets_filling_the_cap_do_not_fail_health_or_readiness(
    admin: AdminFixture,
) -> None:
    # Finding 10 of issue 9: 64 idle sockets made /healthz answer 503, and a liveness probe
    # would then restart the pod and end every call. Here 4 times the cap (8) sit idle.
    admin.health.set_ready()
    idle = [await admin.connect() for _ in range(32)]
    try:
        await trio.sleep(0.1)  # every idle connection has been accepted and counted
        with trio.fail_after(GUARD):
            assert (await get(admin, "/healthz")).status == 200
            assert (await get(admin, "/readyz")).status == 200
            assert (await get(admin, "/metrics")).status == 503
    finally:
        for stream in idle:
            await stream.aclose()


async def test_request_deadline_is_exact_under_autojump(autojump_clock: trio.abc.Clock) -> None:
    server = AdminServer(Metrics(process_metrics=False), Health(), AdminLimits(request_timeout=7))
    client, server_end = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.handle, server_end)
        start = trio.current_time()
        await client.send_all(b"GET /healthz HTTP/1.1\r\nho")
        reply = await read_reply(h11.Connection(h11.CLIENT), client)
        assert trio.current_time() - start == pytest.approx(7)
        assert reply is not None
        assert reply.status == 408
    assert server.active == 0


class BrokenCollector:
    def collect(self) -> list[object]:
        raise RuntimeError("collector bug")


async def test_a_broken_collector_is_a_500_not_a_dead_server(admin: AdminFixture) -> None:
    admin.metrics.registry.register(BrokenCollector())  # type: ignore[arg-type]
    with trio.fail_after(GUARD):
        assert (await get(admin, "/metrics")).status == 500
        assert (await get(admin, "/healthz")).status == 200


@attrs.define
class RecordingCache:
    """Stands in for the prompt cache: records invalidations, holds ``esther`` only."""

    invalidated: list[str] = attrs.Factory(list)

    async def invalidate(self, assistant: AssistantName) -> bool:
        self.invalidated.append(assistant)
        return assistant == "esther"


TOKEN = "refresh-token-for-tests"


async def refresh_server(
    nursery: trio.Nursery, cache: RecordingCache, token: str | None
) -> AdminFixture:
    metrics, health = Metrics(process_metrics=False), Health()
    serve = partial(
        serve_admin,
        "127.0.0.1",
        0,
        metrics=metrics,
        health=health,
        prompts=cache,
        refresh_token=token,
    )
    host, port = await nursery.start(serve)
    return AdminFixture(host, port, metrics, health)


async def test_refresh_needs_the_bearer_token(nursery: trio.Nursery) -> None:
    cache = RecordingCache()
    admin = await refresh_server(nursery, cache, TOKEN)
    with trio.fail_after(GUARD):
        missing = await get(admin, "/v1/prompts/esther/refresh", method="POST")
        wrong = await get(
            admin,
            "/v1/prompts/esther/refresh",
            method="POST",
            headers=[("authorization", "Bearer not-the-token")],
        )
        basic = await get(
            admin,
            "/v1/prompts/esther/refresh",
            method="POST",
            headers=[("authorization", TOKEN)],
        )
    assert (missing.status, wrong.status, basic.status) == (401, 401, 401)
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert cache.invalidated == []


async def test_refresh_with_the_token_drops_the_assistant(nursery: trio.Nursery) -> None:
    cache = RecordingCache()
    admin = await refresh_server(nursery, cache, TOKEN)
    auth = [("authorization", f"Bearer {TOKEN}")]
    with trio.fail_after(GUARD):
        held = await get(admin, "/v1/prompts/esther/refresh", method="POST", headers=auth)
        cold = await get(admin, "/v1/prompts/nobody/refresh", method="POST", headers=auth)
        hostile = await get(admin, "/v1/prompts/..%2Fetc/refresh", method="POST", headers=auth)
        as_get = await get(admin, "/v1/prompts/esther/refresh", headers=auth)
    assert held.status == 200 and json.loads(held.body) == {"assistant": "esther", "dropped": True}
    assert cold.status == 200 and json.loads(cold.body)["dropped"] is False
    assert hostile.status == 404
    assert as_get.status == 405 and as_get.headers["allow"] == "POST"
    assert cache.invalidated == ["esther", "nobody"]


async def test_refresh_is_refused_when_no_token_is_configured(nursery: trio.Nursery) -> None:
    cache = RecordingCache()
    admin = await refresh_server(nursery, cache, None)
    with trio.fail_after(GUARD):
        reply = await get(
            admin,
            "/v1/prompts/esther/refresh",
            method="POST",
            headers=[("authorization", f"Bearer {TOKEN}")],
        )
    assert reply.status == 403
    assert b"DAEMON_ADMIN_TOKEN" in reply.body
    assert cache.invalidated == []
