"""Amazon Nova Sonic over Bedrock's bidirectional stream.

Sans-IO layers (no trio, no sockets): :mod:`.eventstream` (the
``application/vnd.amazon.eventstream`` codec), :mod:`.signing` (SigV4 of the request and the
per-event signature chain), :mod:`.events` (Nova Sonic input events and the Bedrock chunk
wrapping) and :mod:`.output` (typed records of what Sonic sends back).

The client (trio + h2): :func:`open_sonic_client` gives a :class:`SonicClient` whose
``open_stream()`` yields a :class:`SonicStream`; see :mod:`.pool`, :mod:`.stream`,
:mod:`.connection`, :mod:`.h2stream`, :mod:`.transport`, :mod:`.credentials` and
:mod:`.endpoint`. Its modules import downwards only (an import-linter layers contract):
:mod:`.pool` builds the client; :mod:`.stream` and :mod:`.connection` each know an
:class:`~.h2stream.H2Stream` but not each other; an ``H2Stream`` reaches its connection
only through the :class:`~.h2stream.StreamLink` protocol.
"""

from actors.sonic.connection import ConnectionConfig
from actors.sonic.credentials import (
    BotocoreCredentialsProvider,
    CredentialsProvider,
    StaticCredentialsProvider,
)
from actors.sonic.endpoint import Endpoint, resolve_endpoint
from actors.sonic.pool import open_sonic_client
from actors.sonic.signing import Credentials
from actors.sonic.stream import DEFAULT_MODEL_ID, SonicClient, SonicStream

__all__ = [
    "DEFAULT_MODEL_ID",
    "BotocoreCredentialsProvider",
    "ConnectionConfig",
    "Credentials",
    "CredentialsProvider",
    "Endpoint",
    "SonicClient",
    "SonicStream",
    "StaticCredentialsProvider",
    "open_sonic_client",
    "resolve_endpoint",
]
