"""Tell every daemon to refresh an assistant after a publish or rollback.

Each daemon in ``NOVAVOICE_DAEMONS`` gets ``POST <base>/v1/prompts/<name>/refresh`` with the
``DAEMON_ADMIN_TOKEN`` bearer token, all at once, each bounded by ``timeout``. The result
says which confirmed (HTTP 200) and why the others did not; a daemon that did not confirm
picks the change up when its prompt cache's TTL runs out.
"""

from __future__ import annotations

import attrs
import httpx
import trio


@attrs.frozen(kw_only=True)
class RefreshResult:
    """One daemon's answer."""

    daemon: str
    confirmed: bool
    detail: str
    """``dropped`` / ``not cached`` when confirmed, else the status or error."""

    def to_json(self) -> dict[str, object]:
        """As reported by the API."""
        return {"daemon": self.daemon, "confirmed": self.confirmed, "detail": self.detail}


@attrs.define(eq=False)
class DaemonNotifier:
    """Posts refreshes to the configured daemons through one shared HTTP client."""

    daemons: tuple[str, ...]
    token: str | None = attrs.field(repr=False)
    client: httpx.AsyncClient
    timeout: float = 5.0

    async def refresh(self, name: str) -> list[RefreshResult]:
        """Ask every daemon to drop ``name``; one result per daemon, in configured order."""
        results: dict[str, RefreshResult] = {}
        async with trio.open_nursery() as nursery:
            for daemon in self.daemons:
                nursery.start_soon(self._one, daemon, name, results)
        return [results[d] for d in self.daemons]

    async def _one(self, daemon: str, name: str, out: dict[str, RefreshResult]) -> None:
        if self.token is None:
            out[daemon] = RefreshResult(
                daemon=daemon, confirmed=False, detail="DAEMON_ADMIN_TOKEN is not set"
            )
            return
        url = f"{daemon}/v1/prompts/{name}/refresh"
        headers = {"authorization": f"Bearer {self.token}"}
        try:
            with trio.fail_after(self.timeout):
                response = await self.client.post(url, headers=headers)
        except trio.TooSlowError:
            out[daemon] = RefreshResult(daemon=daemon, confirmed=False, detail="timed out")
            return
        except httpx.HTTPError as exc:
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            out[daemon] = RefreshResult(daemon=daemon, confirmed=False, detail=detail)
            return
        if response.status_code != 200:
            out[daemon] = RefreshResult(
                daemon=daemon, confirmed=False, detail=f"HTTP {response.status_code}"
            )
            return
        try:
            dropped = bool(response.json().get("dropped"))
        except (ValueError, AttributeError):
            dropped = False
        out[daemon] = RefreshResult(
            daemon=daemon, confirmed=True, detail="dropped" if dropped else "not cached"
        )
