"""One simulated carrier call over a real WebSocket: :func:`run_simulated_call`.

The caller connects the way Twilio or Asterisk would (path ``/<dialect>/<assistant>``,
Twilio's ``X-Twilio-Signature`` or Asterisk's Basic/bearer ``Authorization``, the ``media``
subprotocol for Asterisk), streams 20 ms frames in real time on an absolute schedule,
plays received assistant audio through a simulated playback buffer
(:class:`~devkit.simcall.playback.PlaybackBuffer`), echoes marks when playback reaches
them, and drops the buffer on ``clear``/``FLUSH_MEDIA``. Everything it measures ends up in
one :class:`~devkit.simcall.report.CallReport`; a call never raises for anything the
daemon or the network does (only for a bad argument or cancellation).
"""

from __future__ import annotations

import random
import ssl
from base64 import b64encode
from collections.abc import Mapping
from urllib.parse import quote, urlsplit

import attrs
import trio
import trio_websocket
from trio_websocket import ConnectionRejected, HandshakeError

from devkit.simcall.asterisk_caller import LATEST_RELEASE, SUBPROTOCOL, AsteriskCaller
from devkit.simcall.conversation import CallConversation
from devkit.simcall.report import CallReport
from devkit.simcall.script import CallScript
from devkit.simcall.twilio_caller import TwilioCaller
from sessions.dialects.twilio_signature import compute_signature

__all__ = ["CallerAuth", "call_path", "run_simulated_call"]

DIALECTS = ("twilio", "asterisk")


@attrs.frozen(kw_only=True)
class CallerAuth:
    """Credentials the carrier presents on the upgrade request."""

    twilio_auth_token: str | None = None
    twilio_public_url: str | None = None
    """Base URL Twilio would have been given in TwiML (``wss://voice.example.com``); the
    signature covers it plus the request path. Defaults to the URL being called."""
    basic: tuple[str, str] | None = None
    bearer_token: str | None = None


def call_path(dialect: str, assistant: str | None) -> str:
    """``/<dialect>/<assistant>`` (the name percent-encoded, so hostile names travel intact)."""
    return f"/{dialect}" if assistant is None else f"/{dialect}/{quote(assistant, safe='')}"


def _headers(auth: CallerAuth, url: str, resource: str) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    if auth.twilio_auth_token is not None:
        parts = urlsplit(auth.twilio_public_url or url)
        signed = f"{parts.scheme}://{parts.netloc}{resource}"
        signature = compute_signature(auth.twilio_auth_token, signed)
        out.append((b"x-twilio-signature", signature.encode()))
    if auth.basic is not None:
        token = b64encode(f"{auth.basic[0]}:{auth.basic[1]}".encode())
        out.append((b"authorization", b"Basic " + token))
    elif auth.bearer_token is not None:
        out.append((b"authorization", b"Bearer " + auth.bearer_token.encode()))
    return out


def _hex_id(rng: random.Random, prefix: str) -> str:
    return prefix + f"{rng.getrandbits(128):032x}"


async def run_simulated_call(
    url: str,
    *,
    dialect: str = "twilio",
    assistant: str | None = None,
    script: CallScript | None = None,
    seed: int = 0,
    label: str | None = None,
    auth: CallerAuth | None = None,
    path: str | None = None,
    custom_parameters: Mapping[str, str] | None = None,
    asterisk_format: str = "ulaw",
    asterisk_json: bool = True,
    asterisk_release: str | None = None,
    asterisk_connection_id: str | None = None,
    connect_timeout: float = 10.0,
    ssl_context: ssl.SSLContext | None = None,
) -> CallReport:
    """Place one simulated carrier call against the daemon at ``url`` and measure it.

    ``url`` is the daemon's base (``ws://127.0.0.1:8080``); the request path is
    ``/<dialect>/<assistant>`` unless ``path`` gives it whole. ``custom_parameters`` are
    Twilio's ``start.customParameters`` or Asterisk's channel variables;
    ``asterisk_release`` picks the simulated Asterisk release (default: the newest);
    ``asterisk_connection_id`` fixes ``connection_id`` (for an outbound call Asterisk sends
    the websocket_client.conf section name, the same for every call; default: random).
    Never raises for
    what the daemon or network does: refusals, resets and protocol errors are outcomes.
    """
    if dialect not in DIALECTS:
        raise ValueError(f"dialect {dialect!r}; one of {DIALECTS}")
    script = script or CallScript()
    auth = auth or CallerAuth()
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a ws:// or wss:// URL: {url!r}")
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    resource = path or parts.path.rstrip("/") + call_path(dialect, assistant)
    host_header = parts.hostname if port in (80, 443) else f"{parts.hostname}:{port}"
    rng = random.Random(seed)
    carrier: TwilioCaller | AsteriskCaller
    if dialect == "twilio":
        carrier = TwilioCaller(
            stream_sid=_hex_id(rng, "MZ"),
            call_sid=_hex_id(rng, "CA"),
            custom_parameters=dict(custom_parameters or {}),
        )
    else:
        carrier = AsteriskCaller(
            connection_id=asterisk_connection_id or _hex_id(rng, ""),
            channel_id=f"{rng.randrange(10**9, 10**10)}.{rng.randrange(1000)}",
            format_name=asterisk_format,
            control_json=asterisk_json,
            channel_variables=dict(custom_parameters or {}),
            release=asterisk_release or LATEST_RELEASE,
        )
    started = trio.current_time()
    base: dict[str, object] = {
        "label": label or f"{dialect}-{seed}",
        "dialect": dialect,
        "assistant": assistant,
        "seed": seed,
        "misbehaviour": script.misbehaviour.value,
        "started_at": started,
    }

    def failed(outcome: str, error: str, status: int | None = None) -> CallReport:
        return CallReport(
            **base,  # type: ignore[arg-type]
            outcome=outcome,
            ended_at=trio.current_time(),
            error=error,
            http_status=status,
        )

    try:
        with trio.fail_after(connect_timeout):
            stream: trio.SocketStream | trio.SSLStream[trio.SocketStream]
            if secure:
                context = ssl_context or ssl.create_default_context()
                stream = await trio.open_ssl_over_tcp_stream(
                    parts.hostname, port, ssl_context=context, https_compatible=True
                )
            else:
                stream = await trio.open_tcp_stream(parts.hostname, port)
    except (OSError, trio.TooSlowError) as exc:
        return failed("connect_failed", f"{type(exc).__name__}: {exc}")

    call = CallConversation(carrier, script, seed)
    admission: float | None = None
    failure: CallReport | None = None
    try:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(connect_timeout):
                ws = await trio_websocket.wrap_client_stream(
                    nursery,
                    stream,
                    host_header,
                    resource,
                    subprotocols=[SUBPROTOCOL] if dialect == "asterisk" else None,
                    extra_headers=_headers(auth, url, resource),
                    message_queue_size=64,
                )
            admission = trio.current_time() - started
            try:
                await call.run(ws, stream)
            finally:
                with trio.move_on_after(2.0, shield=True):
                    await ws.aclose()
    except* ConnectionRejected as group:
        rejected = group.exceptions[0]
        assert isinstance(rejected, ConnectionRejected)
        body = (rejected.body or b"").decode("utf-8", "replace")[:200]
        failure = failed("rejected", body, rejected.status_code)
    except* trio.TooSlowError:
        failure = failed("connect_failed", "WebSocket handshake timed out")
    except* (HandshakeError, OSError, trio.BrokenResourceError) as group:
        failure = failed("connect_failed", repr(group.exceptions[0]))
    finally:
        with trio.move_on_after(1.0, shield=True):
            await stream.aclose()
    if failure is not None:
        return failure
    base["admission_s"] = admission
    return call.report(base, trio.current_time())
