"""The ``novavoice`` command: one entry point, one subcommand per module.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``main(args) -> int``; this file only dispatches, so the subcommands stay independent.
Only the chosen subcommand's module is imported: ``novavoice serve`` never loads the
development kit, and ``novavoice --help`` lists the table below without importing anything.
The development kit's subcommands need the ``devkit`` extra; without it they say how to
install it instead of failing on an import.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import re
import sys
from collections.abc import Sequence
from types import ModuleType

import attrs

from actors.errors import ConfigError

DISTRIBUTION = "novavoice"


@attrs.frozen
class Subcommand:
    """One row of the table: where the subcommand lives and what it needs."""

    module: str
    help: str
    extra: str | None = None
    """The optional dependency group it needs beyond the daemon's (``devkit``), if any."""


SUBCOMMANDS: dict[str, Subcommand] = {
    "serve": Subcommand("sessions.serve", "run the daemon: carrier WebSockets in, Nova Sonic out"),
    "demo": Subcommand(
        "devkit.demo", "run the embedded demo on this machine, no AWS account needed", "devkit"
    ),
    "prompts-demo": Subcommand(
        "devkit.prompts_demo", "show the prompt path alone against a local S3", "devkit"
    ),
    "emulator": Subcommand("devkit.emulator.cli", "run the local Nova Sonic emulator", "devkit"),
    "loadtest": Subcommand(
        "devkit.loadtest", "drive simulated carrier calls at a URL and measure them", "devkit"
    ),
    "prompts": Subcommand(
        "promptadmin.cli", "validate, publish, diff and roll back assistant definitions"
    ),
    "admin": Subcommand(
        "promptadmin.command",
        "run the prompt admin: JSON API and web page for assistant definitions",
        "admin",
    ),
}


class MissingExtra(Exception):
    """A subcommand needs an extra that is not installed."""


def install_hint(extra: str) -> str:
    """The command that installs ``extra``."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"


def missing_requirements(extra: str) -> list[str]:
    """The distributions ``extra`` requires that are not installed (by package metadata).

    Empty when this package's metadata is absent (running from a source tree without an
    install): the import itself is then the only check.
    """
    try:
        requirements = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return []
    missing = []
    marker = re.compile(r"""extra\s*==\s*["']""" + re.escape(extra) + r"""["']""")
    for requirement in requirements:
        name, _, markers = requirement.partition(";")
        if not marker.search(markers):
            continue
        match = re.match(r"[A-Za-z0-9._-]+", name.strip())
        if match is None or match.group(0) == DISTRIBUTION:  # self-reference (dev -> devkit)
            continue
        try:
            importlib.metadata.distribution(match.group(0))
        except importlib.metadata.PackageNotFoundError:
            missing.append(match.group(0))
    return missing


def load(name: str) -> ModuleType:
    """Import the module of subcommand ``name``; :class:`MissingExtra` if its extra is absent."""
    command = SUBCOMMANDS[name]
    if command.extra is not None:
        missing = missing_requirements(command.extra)
        if missing:
            raise MissingExtra(
                f"`novavoice {name}` needs the {command.extra} extra "
                f"(missing: {', '.join(missing)}): {install_hint(command.extra)}"
            )
    try:
        return importlib.import_module(command.module)
    except ModuleNotFoundError as exc:
        ours = exc.name is not None and exc.name.split(".")[0] in ("actors", "sessions", "devkit")
        if command.extra is None or ours:
            raise
        raise MissingExtra(
            f"`novavoice {name}` needs the {command.extra} extra "
            f"(missing: {exc.name}): {install_hint(command.extra)}"
        ) from exc


def top_parser() -> argparse.ArgumentParser:
    """The top-level parser: the subcommands' names and help, none of their modules."""
    parser = argparse.ArgumentParser(
        prog="novavoice",
        description="NovaVoice: phone calls (Twilio, Asterisk) to Amazon Nova Sonic.",
        epilog="Commands marked [devkit] need the development kit: " + install_hint("devkit"),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in SUBCOMMANDS.items():
        suffix = f" [{command.extra}]" if command.extra else ""
        sub.add_parser(name, help=command.help + suffix, add_help=False)
    return parser


def command_parser(name: str, module: ModuleType) -> argparse.ArgumentParser:
    """The full parser of one subcommand, from its module."""
    parser = argparse.ArgumentParser(
        prog=f"novavoice {name}",
        description=module.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.add_arguments(parser)
    return parser


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``argv``, importing only the chosen subcommand's module (into ``_module``).

    Raises :class:`MissingExtra` if that subcommand's extra is not installed.
    """
    if not argv or argv[0] not in SUBCOMMANDS:
        # No subcommand first: help, or a usage error listing the choices (both exit).
        parser = top_parser()
        parser.parse_args(argv)
        parser.error("the subcommand must come first")
    name, rest = argv[0], argv[1:]
    module = load(name)
    args = command_parser(name, module).parse_args(rest)
    args.command = name
    args._module = module
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``novavoice``; returns the process exit status."""
    try:
        args = parse_args(list(sys.argv[1:] if argv is None else argv))
        return int(args._module.main(args))
    except MissingExtra as exc:
        print(f"novavoice: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"novavoice: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover - exercised through the console script
    sys.exit(main())
