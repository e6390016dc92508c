"""How many connections each source address holds without having started a call.

A connection counts from the moment its upgrade request reaches the supervisor until the
carrier's start message arrives (or the connection ends, whichever comes first). Until
then it costs a call slot (``MAX_CALLS``) and, for a named assistant, a prompt lookup,
without anyone being on the line, so one address holding many of them could take the
daemon's capacity from every carrier. Beyond ``MAX_UNSTARTED_PER_SOURCE`` the supervisor
refuses the upgrade with HTTP 429 (``novavoice_admission_refusals_total{reason=
"source_limit"}``).

The source is the TCP peer address, never ``X-Forwarded-For`` (a header anyone can
write). Behind a load balancer or a TLS-terminating proxy every connection comes from the
proxy's address: raise the cap there, or set 0 to turn it off and limit per client at the
proxy. Connections that have not yet sent their upgrade request are not counted here:
trio-websocket drops them after ``WEBSOCKET_HANDSHAKE_TIMEOUT_MS``. Each worker process
(``--workers``) has its own count.

Plain state owned by the supervisor (one per daemon process, never module-level); no I/O.
"""

from __future__ import annotations


class UnstartedSlot:
    """One connection's place in its source's count; :meth:`release` it once started or
    ended (releasing twice is harmless, so both the start and the end may do it)."""

    __slots__ = ("_owner", "_source")

    def __init__(self, owner: UnstartedConnections | None, source: str) -> None:
        self._owner = owner
        self._source = source

    def release(self) -> None:
        """Stop counting this connection (idempotent)."""
        owner, self._owner = self._owner, None
        if owner is not None:
            owner._release(self._source)


class UnstartedConnections:
    """Per-source counts of connections without a started call; ``cap`` 0 means no cap."""

    def __init__(self, cap: int) -> None:
        if cap < 0:
            raise ValueError("cap must be 0 (no cap) or positive")
        self.cap = cap
        self._counts: dict[str, int] = {}

    def count(self, source: str) -> int:
        """Connections from ``source`` not started yet."""
        return self._counts.get(source, 0)

    @property
    def sources(self) -> int:
        """Sources holding at least one unstarted connection (the memory this costs)."""
        return len(self._counts)

    def admit(self, source: str) -> UnstartedSlot | None:
        """A slot for one more connection from ``source``, or ``None`` if it is at the cap."""
        if not self.cap:
            return UnstartedSlot(None, source)
        held = self._counts.get(source, 0)
        if held >= self.cap:
            return None
        self._counts[source] = held + 1
        return UnstartedSlot(self, source)

    def _release(self, source: str) -> None:
        held = self._counts[source] - 1
        if held:
            self._counts[source] = held
        else:
            del self._counts[source]  # only sources with open connections take memory
