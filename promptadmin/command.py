"""``novavoice admin``: the prompt admin's web server (JSON API, page, metrics).

Runs the admin as its own process, with write-capable AWS credentials. Needs the ``admin``
extra (``pip install 'novavoice[admin]'``); the daemon does not.

Variables: the daemon's PROMPTS_S3_BUCKET, PROMPTS_S3_PREFIX, AWS_REGION, PROMPT_MAX_BYTES;
the admin's ADMIN_TOKENS (name:token,...), ADMIN_AUDIT_LOG, NOVAVOICE_DAEMONS (daemon admin
base URLs to refresh after each publish) and DAEMON_ADMIN_TOKEN.
"""

from __future__ import annotations

import argparse
import sys

from actors.errors import VersioningDisabled

DEFAULT_LISTEN = "127.0.0.1:8300"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``novavoice admin`` (kept import-light: the CLI loads every command)."""
    parser.add_argument(
        "--listen", default=DEFAULT_LISTEN, help=f"HOST:PORT to serve on (default {DEFAULT_LISTEN})"
    )
    parser.add_argument("--certfile", help="serve over TLS with this certificate (PEM)")
    parser.add_argument("--keyfile", help="the certificate's private key (PEM)")


def main(args: argparse.Namespace) -> int:
    """Run the admin until interrupted (exit 2 on configuration errors)."""
    try:
        from promptadmin import server
    except ImportError as exc:
        print(
            f"novavoice admin needs the 'admin' extra (pip install 'novavoice[admin]'): {exc}",
            file=sys.stderr,
        )
        return 2
    try:
        return server.main(args)
    except VersioningDisabled as exc:
        print(f"novavoice admin: {exc}", file=sys.stderr)
        return 2
