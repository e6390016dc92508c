"""Where the shared conformance vectors live, and loaders for them (no fixtures, no conftest).

The repository is cloned beside ``shared/`` (locally ``/work/main`` + ``/work/shared``, in CI
``../shared``), so the vectors are found relative to this file. ``BEDROCK_VECTORS_DIR`` adds
colon-separated directories of further Bedrock bidi vectors.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
EVENTSTREAM_SUITE = SHARED / "vectors" / "eventstream"
BEDROCK_BIDI = SHARED / "vectors" / "bedrock-bidi"


def bedrock_vector_paths(environ: dict[str, str] | None = None) -> list[Path]:
    """Every ``*.json`` in the shared bedrock-bidi folder and in ``BEDROCK_VECTORS_DIR``."""
    env = os.environ if environ is None else environ
    directories = [BEDROCK_BIDI]
    directories += [Path(part) for part in env.get("BEDROCK_VECTORS_DIR", "").split(":") if part]
    paths: list[Path] = []
    for directory in directories:
        paths.extend(sorted(directory.glob("*.json")))
    return paths


def load_vector(path: Path) -> dict[str, Any]:
    """Parse one Bedrock bidi vector file."""
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def eventstream_cases(kind: str) -> list[str]:
    """Names of the AWS event-stream suite's ``positive`` or ``negative`` cases."""
    return sorted(p.name for p in (EVENTSTREAM_SUITE / "encoded" / kind).iterdir())
