"""Amazon Nova Sonic over Bedrock's bidirectional stream.

Sans-IO layers (no trio, no sockets): :mod:`.eventstream` (the
``application/vnd.amazon.eventstream`` codec), :mod:`.signing` (SigV4 of the request and the
per-event signature chain), :mod:`.events` (Nova Sonic input events and the Bedrock chunk
wrapping) and :mod:`.output` (typed records of what Sonic sends back).
"""
