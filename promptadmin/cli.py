"""Publish and inspect assistant definitions in the versioned prompts bucket.

Commands::

    novavoice prompts validate FILE...              check files, nothing sent (exit 1: errors)
    novavoice prompts list                          every assistant and its current version
    novavoice prompts show NAME [--version V]       print a version's text
    novavoice prompts pull NAME [--version V] -o FILE
    novavoice prompts push NAME FILE -m MESSAGE [--base V]
    novavoice prompts history NAME                  versions, newest first
    novavoice prompts diff NAME [V1] [V2]           unified diff (default: previous → current)
    novavoice prompts rollback NAME VERSION -m MESSAGE

``push`` validates the file first, then writes only over the version it started from: the
one named by ``--base`` (what ``pull`` printed), else the version current when the push
began. If someone published in between, nothing is written, the other change stays, the
local file is untouched, and the exit status is 3.

Bucket, prefix, region and ``PROMPT_MAX_BYTES`` come from the daemon's variables
(``PROMPTS_S3_BUCKET``, ``PROMPTS_S3_PREFIX``, ``AWS_REGION``; ``.env`` is read too);
credentials from the standard AWS chain, and ``AWS_ENDPOINT_URL_S3`` points at another S3.
Use credentials with ``aws/s3-prompt-admin-policy.json``, not the daemon's read-only ones.
The author recorded with each version is ``--author``, else ``NOVAVOICE_ADMIN_AUTHOR``, else
the OS user.

Exit status: 0 done; 1 invalid content (nothing written); 2 usage or configuration;
3 conflict with a concurrent edit (nothing written); 4 assistant or version not found;
5 S3 refused or failed (access, bucket versioning off, network).
"""

from __future__ import annotations

import argparse
import difflib
import getpass
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from actors.assistant_definition import ValidationReport, validate_definition
from actors.errors import (
    ConfigError,
    InvalidAssistantName,
    NovaVoiceError,
    PromptConflict,
    PromptNotFound,
    PromptRejected,
    PromptVersionNotFound,
)
from promptadmin.versions import PromptVersions, StoredVersion, make_prompt_versions
from sessions.config import load_settings

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_CONFLICT = 3
EXIT_NOT_FOUND = 4
EXIT_S3 = 5

StoreFactory = Callable[[], PromptVersions]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Sub-commands of ``novavoice prompts``."""
    parser.add_argument("--author", help="name recorded with a push or rollback")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    p = sub.add_parser("validate", help="check definition files; nothing is sent")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("--json", action="store_true", help="print the reports as JSON")

    sub.add_parser("list", help="every assistant with its current version")

    p = sub.add_parser("show", help="print one version of an assistant")
    p.add_argument("name")
    p.add_argument("--version", dest="version_id", help="version id (default: current)")

    p = sub.add_parser("pull", help="save one version of an assistant to a file")
    p.add_argument("name")
    p.add_argument("--version", dest="version_id", help="version id (default: current)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="FILE")

    p = sub.add_parser("push", help="validate a file and publish it as the new version")
    p.add_argument("name")
    p.add_argument("file", type=Path)
    p.add_argument("-m", "--message", required=True, help="what changed and why")
    p.add_argument(
        "--base",
        metavar="VERSION",
        help="the version this edit started from (as pull printed); refused if it is "
        "no longer current",
    )

    p = sub.add_parser("history", help="the versions of an assistant, newest first")
    p.add_argument("name")
    p.add_argument("--limit", type=int, default=50, help="show at most this many (default 50)")

    p = sub.add_parser("diff", help="unified diff between two versions")
    p.add_argument("name")
    p.add_argument("v1", nargs="?", help="older version (default: the one before V2)")
    p.add_argument("v2", nargs="?", help="newer version (default: current)")

    p = sub.add_parser("rollback", help="publish an old version again as the current one")
    p.add_argument("name")
    p.add_argument("version_id", metavar="VERSION")
    p.add_argument("-m", "--message", required=True, help="why")


def main(args: argparse.Namespace, store_factory: StoreFactory | None = None) -> int:
    """Run one ``novavoice prompts`` action; returns the exit status (see the docstring)."""
    out, err = sys.stdout, sys.stderr
    try:
        if args.action == "validate":
            return _validate(args, out, err)
        factory = store_factory or (lambda: make_prompt_versions(load_settings()))
        store = factory()
        store.check_versioning()
        action = _ACTIONS[args.action]
        return action(store, args, out, err)
    except PromptRejected as exc:
        _fail(err, str(exc))
        if isinstance(exc.report, ValidationReport):
            _print_report(err, str(getattr(args, "file", args.name)), exc.report)
        return EXIT_INVALID
    except PromptConflict as exc:
        _fail(err, f"conflict: {exc}")
        return EXIT_CONFLICT
    except InvalidAssistantName as exc:
        _fail(err, str(exc))
        return EXIT_USAGE
    except (PromptNotFound, PromptVersionNotFound) as exc:
        _fail(err, str(exc))
        return EXIT_NOT_FOUND
    except OSError as exc:
        _fail(err, f"{exc.filename or ''}: {exc.strerror or exc}")
        return EXIT_USAGE
    except NovaVoiceError as exc:
        if isinstance(exc, ConfigError):
            raise  # sessions.cli prints configuration errors (exit 2)
        _fail(err, str(exc))
        return EXIT_S3


def _fail(err: TextIO, message: str) -> None:
    print(f"novavoice prompts: {message}", file=err)


def _author(args: argparse.Namespace) -> str:
    return str(args.author or os.environ.get("NOVAVOICE_ADMIN_AUTHOR") or getpass.getuser())


def _print_report(stream: TextIO, label: str, report: ValidationReport) -> None:
    for issue in report.issues:
        print(f"{label}:{issue}", file=stream)


def _validate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    max_bytes = load_settings().prompts.max_bytes
    status = EXIT_OK
    reports: dict[str, object] = {}
    for path in args.files:
        _, report = validate_definition(path.read_bytes(), max_bytes=max_bytes)
        if not report.ok:
            status = EXIT_INVALID
        if args.json:
            reports[str(path)] = report.to_json()
        else:
            _print_report(out, str(path), report)
            summary = "ok" if report.ok else "invalid"
            print(
                f"{path}: {summary} ({len(report.errors)} error(s), "
                f"{len(report.warnings)} warning(s))",
                file=out,
            )
    if args.json:
        json.dump(reports, out, indent=2)
        print(file=out)
    return status


def _describe(v: StoredVersion) -> str:
    when = v.time.isoformat() if v.time else "?"
    return (
        f"{v.name} version {v.version_id} (etag {v.etag}, {v.size} bytes, {when}, "
        f"by {v.author or '?'}: {v.message or '-'})"
    )


def _list(store: PromptVersions, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    rows = store.list_assistants()
    if not rows:
        print(f"no assistants under s3://{store.bucket}/{store.prefix}", file=err)
    for s in rows:
        when = s.updated.isoformat() if s.updated else "?"
        print(f"{s.name}\t{s.version_id}\t{s.size}\t{when}\t{s.author or '?'}", file=out)
    return EXIT_OK


def _show(store: PromptVersions, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    v = store.get(args.name, args.version_id)
    print(_describe(v), file=err)
    out.write(v.text)
    out.flush()
    return EXIT_OK


def _pull(store: PromptVersions, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    v = store.get(args.name, args.version_id)
    args.output.write_bytes(v.body)
    print(f"wrote {args.output}: {_describe(v)}", file=err)
    print(f"push your edit with: --base {v.version_id}", file=err)
    return EXIT_OK


def _push(store: PromptVersions, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    body = args.file.read_bytes()
    # Validate before touching S3, so an invalid file costs nothing and says why.
    _, report = store.validate(body)
    _print_report(err, str(args.file), report)
    if not report.ok:
        _fail(err, f"{args.file} is invalid ({len(report.errors)} error(s)); nothing was written")
        return EXIT_INVALID
    if args.base is not None:
        base: StoredVersion | None = store.get(args.name, args.base)
    else:
        try:
            base = store.get(args.name)
        except PromptNotFound:
            base = None  # a new assistant: written only if it still does not exist
    if base is not None and base.body == body:
        print(f"{args.name}: unchanged from version {base.version_id}; nothing written", file=out)
        return EXIT_OK
    try:
        written = store.put(
            args.name,
            body,
            author=_author(args),
            message=args.message,
            if_match=base.etag if base is not None else None,
        )
    except PromptConflict:
        _report_conflict(store, args.name, base, err)
        raise
    print(f"published {_describe(written)}", file=out)
    return EXIT_OK


def _report_conflict(
    store: PromptVersions, name: str, base: StoredVersion | None, err: TextIO
) -> None:
    try:
        now = store.get(name)
    except NovaVoiceError:
        return
    started = f"version {base.version_id}" if base else "no assistant"
    print(f"you started from {started}; the current one is {_describe(now)}", file=err)
    if base is not None:
        print(
            f"see their change: novavoice prompts diff {name} {base.version_id} "
            f"{now.version_id}; then re-apply yours",
            file=err,
        )


def _history(store: PromptVersions, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    for v in store.history(args.name, limit=args.limit):
        when = v.time.isoformat() if v.time else "?"
        mark = "*" if v.is_latest else " "
        if v.deleted:
            print(f"{mark} {v.version_id}\t{when}\t(deleted)", file=out)
            continue
        sha = (v.sha256 or "-")[:12]
        rollback = f" (rollback of {v.metadata.rollback_of})" if v.metadata.rollback_of else ""
        print(
            f"{mark} {v.version_id}\t{when}\t{v.author or '?'}\t{v.size}\t{sha}\t"
            f"{v.message or '-'}{rollback}",
            file=out,
        )
    return EXIT_OK


def _diff(store: PromptVersions, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    v1, v2 = args.v1, args.v2
    if v1 is None:  # no version named: the previous one against the current one
        ids = [v.version_id for v in store.history(args.name, limit=2) if not v.deleted]
        if len(ids) < 2:
            _fail(err, f"{args.name} has only one version")
            return EXIT_NOT_FOUND
        v2, v1 = ids[0], ids[1]
    elif v2 is None:  # one version named: it against the current one
        v2 = store.get(args.name).version_id
    old, new = store.get(args.name, v1), store.get(args.name, v2)
    lines = difflib.unified_diff(
        old.text.splitlines(keepends=True),
        new.text.splitlines(keepends=True),
        fromfile=f"{args.name}.md@{old.version_id}",
        tofile=f"{args.name}.md@{new.version_id}",
    )
    for line in lines:
        out.write(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return EXIT_OK


def _rollback(store: PromptVersions, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        current: str | None = store.get(args.name).etag
    except PromptNotFound:
        current = None  # deleted by hand (a delete marker is current): restore it
    written = store.rollback(
        args.name,
        args.version_id,
        author=_author(args),
        message=args.message,
        if_match=current,
    )
    print(f"rolled back: {_describe(written)} (copy of {args.version_id})", file=out)
    return EXIT_OK


_ACTIONS: dict[str, Callable[[PromptVersions, argparse.Namespace, TextIO, TextIO], int]] = {
    "list": _list,
    "show": _show,
    "pull": _pull,
    "push": _push,
    "history": _history,
    "diff": _diff,
    "rollback": _rollback,
}
