"""A local, protocol-faithful Amazon Nova Sonic (Bedrock bidirectional stream) emulator.

TLS + HTTP/2 on loopback, the same framing and signatures as Bedrock (it verifies them), the
Nova Sonic event rules, simulated turns with real timing and barge-in, and fault injection.
Run it with ``novavoice emulator`` or in-process with :func:`open_emulator`.
"""

from devkit.emulator.config import EmulatorConfig, StreamPlan, parse_directives
from devkit.emulator.server import Emulator, open_emulator, serve_emulator
from devkit.emulator.stats import EmulatorStatistics

__all__ = [
    "Emulator",
    "EmulatorConfig",
    "EmulatorStatistics",
    "StreamPlan",
    "open_emulator",
    "parse_directives",
    "serve_emulator",
]
