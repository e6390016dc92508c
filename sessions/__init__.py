"""The NovaVoice daemon: configuration, supervisor, call channels, carrier dialects, CLI."""
