"""boto3 lives in one module: the S3 prompt store (DESIGN.md layering rule)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[2]
ALLOWED = {Path("actors/s3_prompt_store.py")}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_s3_prompt_store_imports_boto3() -> None:
    offenders = sorted(
        str(path.relative_to(ROOT))
        for folder in ("actors", "sessions", "bench")
        for path in (ROOT / folder).rglob("*.py")
        if "boto3" in imported_modules(path) and path.relative_to(ROOT) not in ALLOWED
    )
    assert offenders == []
    assert "boto3" in imported_modules(ROOT / "actors/s3_prompt_store.py")
