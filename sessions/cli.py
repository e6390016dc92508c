"""The ``novavoice`` command: one entry point, one subcommand per module.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``main(args) -> int``; this file only dispatches, so the subcommands stay independent.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from actors.errors import ConfigError

# name -> (module, one-line help).
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("devkit.demo", "run the embedded demo on this machine, no AWS account needed"),
    "serve": ("sessions.serve", "run the daemon: carrier WebSockets in, Nova Sonic out"),
    "prompts-demo": ("devkit.prompts_demo", "show the prompt path alone against a local S3"),
    "emulator": ("devkit.emulator.cli", "run the local Nova Sonic emulator"),
    "prompts": ("promptadmin.cli", "validate, publish, diff and roll back assistant definitions"),
    "admin": ("promptadmin.command", "run the prompt admin: JSON API and web page for prompts"),
    "loadtest": ("devkit.loadtest", "drive simulated carrier calls at a URL and measure them"),
}


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every subcommand's arguments."""
    parser = argparse.ArgumentParser(
        prog="novavoice",
        description="NovaVoice: phone calls (Twilio, Asterisk) to Amazon Nova Sonic.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(
            name,
            help=help_text,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``novavoice``; returns the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args._module.main(args))
    except ConfigError as exc:
        print(f"novavoice: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover - exercised through the console script
    sys.exit(main())
