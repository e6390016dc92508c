"""``novavoice prompts`` against moto with a versioned bucket: publish, history, diff,
rollback, concurrent edits, invalid content, and a bucket without versioning."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from actors.errors import PromptConflict
from promptadmin import cli as prompts_cli
from promptadmin import versions as versions_module
from promptadmin.versions import PromptVersions, StoredVersion
from sessions import cli
from sessions.cli import parse_args

BUCKET = "nova-sonic-prompts"
PREFIX = "assistants/"
KEY = f"{PREFIX}esther.md"
V1 = "---\nvoice: amy\n---\nYou are Esther.\nBe brief.\n"
V2 = "---\nvoice: amy\ntemperature: 0.3\n---\nYou are Esther.\nBe very brief.\n"
ADMIN_POLICY = Path(__file__).parents[2] / "aws" / "s3-prompt-admin-policy.json"


@pytest.fixture
def s3(aws_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """A moto S3 with a versioned prompts bucket; the CLI's variables point at it."""
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("PROMPTS_S3_BUCKET", BUCKET)
    monkeypatch.setenv("PROMPTS_S3_PREFIX", PREFIX)
    monkeypatch.setenv("NOVAVOICE_ADMIN_AUTHOR", "alice")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        _SHARED["client"] = client
        try:
            yield client
        finally:
            _SHARED.clear()


_SHARED: dict[str, Any] = {}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``novavoice prompts ARGV`` on the fixture's client (one boto3 client per test:
    building one per command costs seconds); see :func:`run_from_env` for the full path."""
    client = _SHARED.get("client")
    if client is None:
        return run_from_env(capsys, *argv)
    args = parse_args(["prompts", *argv])
    status = prompts_cli.main(
        args, store_factory=lambda: PromptVersions(client=client, bucket=BUCKET, prefix=PREFIX)
    )
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def run_from_env(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``novavoice prompts ARGV`` exactly as the console script does (settings from the
    environment, a client from the standard chain)."""
    status = cli.main(["prompts", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def versions(client: Any) -> list[dict[str, Any]]:
    listed = client.list_object_versions(Bucket=BUCKET, Prefix=KEY)
    return [v for v in listed.get("Versions", []) if v["Key"] == KEY]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_push_history_diff_rollback(
    s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "push", "esther", str(write(tmp_path, "a.md", V1)), "-m", "new")
    assert status == 0, err
    assert "published esther version" in out
    status, out, err = run(
        capsys, "--author", "Zoë Ñ", "push", "esther", str(write(tmp_path, "b.md", V2)),
        "-m", "shorter answers; températures",
    )  # fmt: skip
    assert status == 0, err
    ids = [v["VersionId"] for v in versions(s3)]  # newest first
    assert len(ids) == 2

    status, out, _ = run(capsys, "history", "esther")
    assert status == 0
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"* {ids[0]}\t") and "Zoë Ñ" in lines[0]
    assert "shorter answers; températures" in lines[0]
    assert lines[1].startswith(f"  {ids[1]}\t") and "\talice\t" in lines[1]
    assert f"\t{len(V1.encode())}\t" in lines[1]

    status, out, _ = run(capsys, "diff", "esther")
    assert status == 0
    assert out.splitlines()[:2] == [f"--- esther.md@{ids[1]}", f"+++ esther.md@{ids[0]}"]
    assert "-Be brief.\n" in out and "+Be very brief.\n" in out and "+temperature: 0.3\n" in out
    # Naming both versions the other way round reverses the diff.
    status, out, _ = run(capsys, "diff", "esther", ids[0], ids[1])
    assert "+Be brief.\n" in out and "-Be very brief.\n" in out

    status, out, err = run(capsys, "rollback", "esther", ids[1], "-m", "too terse")
    assert status == 0, err
    after = [v["VersionId"] for v in versions(s3)]
    # The rollback is a new version on top; the two older ones are untouched.
    assert len(after) == 3 and after[1:] == ids and after[0] not in ids
    body = s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read()
    assert body == V1.encode()
    status, out, _ = run(capsys, "history", "esther")
    newest = out.splitlines()[0]
    assert newest.startswith(f"* {after[0]}\t")
    assert "too terse" in newest and f"(rollback of {ids[1]})" in newest
    # And the current version now differs from the one before it exactly by the rollback.
    status, out, _ = run(capsys, "diff", "esther")
    assert "+Be brief.\n" in out and "-Be very brief.\n" in out


def test_show_pull_list(s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "push", "esther", str(write(tmp_path, "a.md", V1)), "-m", "one")[0] == 0
    assert run(capsys, "push", "esther", str(write(tmp_path, "b.md", V2)), "-m", "two")[0] == 0
    old_id = versions(s3)[1]["VersionId"]

    status, out, err = run(capsys, "show", "esther")
    assert status == 0 and out == V2 and "by alice: two" in err
    status, out, _ = run(capsys, "show", "esther", "--version", old_id)
    assert status == 0 and out == V1

    target = tmp_path / "pulled.md"
    status, _, err = run(capsys, "pull", "esther", "--version", old_id, "-o", str(target))
    assert status == 0 and target.read_text() == V1
    assert f"--base {old_id}" in err

    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}README.txt", Body=b"not an assistant")
    status, out, _ = run(capsys, "list")
    assert status == 0
    rows = [line.split("\t") for line in out.splitlines()]
    assert [(r[0], r[1], r[2], r[4]) for r in rows] == [
        ("esther", versions(s3)[0]["VersionId"], str(len(V2.encode())), "alice")
    ]


def test_a_stale_base_is_refused_and_nothing_is_lost(
    s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "push", "esther", str(write(tmp_path, "a.md", V1)), "-m", "one")[0] == 0
    base = versions(s3)[0]["VersionId"]
    # Bob publishes meanwhile (through the same store API the admin web page uses).
    other = PromptVersions(client=s3, bucket=BUCKET, prefix=PREFIX)
    current = other.get("esther").etag
    bobs = other.put("esther", V2.encode(), author="bob", message="bob's", if_match=current)
    mine = write(tmp_path, "mine.md", V1 + "Mine.\n")
    status, _, err = run(capsys, "push", "esther", str(mine), "-m", "mine", "--base", base)
    assert status == prompts_cli.EXIT_CONFLICT
    assert "conflict" in err and f"you started from version {base}" in err
    assert bobs.version_id in err and f"diff esther {base} {bobs.version_id}" in err
    # Bob's version is still current, nothing was written, my file is intact.
    assert [v["VersionId"] for v in versions(s3)] == [bobs.version_id, base]
    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == V2.encode()
    assert mine.read_text() == V1 + "Mine.\n"


class RacingVersions(PromptVersions):
    """Another writer publishes between the push's read and its conditional write."""

    def put(self, name: str, body: bytes, **kwargs: Any) -> StoredVersion:
        rival = PromptVersions(client=self.client, bucket=self.bucket, prefix=self.prefix)
        try:
            current: str | None = rival.get(name).etag
        except Exception:
            current = None
        rival.put(name, b"Rival edit.\n", author="rival", message="race", if_match=current)
        return super().put(name, body, **kwargs)


@pytest.mark.parametrize("existing", [True, False], ids=["update", "create"])
def test_a_write_racing_the_push_gets_a_conflict(
    s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], existing: bool
) -> None:
    if existing:
        assert run(capsys, "push", "esther", str(write(tmp_path, "a.md", V1)), "-m", "one")[0] == 0
    before = len(versions(s3))
    args = parse_args(["prompts", "push", "esther", str(write(tmp_path, "b.md", V2)), "-m", "mine"])
    status = prompts_cli.main(
        args, store_factory=lambda: RacingVersions(client=s3, bucket=BUCKET, prefix=PREFIX)
    )
    err = capsys.readouterr().err
    assert status == prompts_cli.EXIT_CONFLICT, err
    # Exactly the rival's version was added; it is current; mine was not written.
    assert len(versions(s3)) == before + 1
    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == b"Rival edit.\n"
    started = "no assistant" if not existing else "you started from version"
    assert started in err


def test_store_put_conflict_carries_what_it_expected(s3: Any) -> None:
    store = PromptVersions(client=s3, bucket=BUCKET, prefix=PREFIX)
    first = store.put("esther", V1.encode(), author="a", message="m", if_match=None)
    with pytest.raises(PromptConflict) as info:
        store.put("esther", V2.encode(), author="a", message="m", if_match='"0000"')
    assert info.value.expected == '"0000"' and info.value.assistant == "esther"
    with pytest.raises(PromptConflict):
        store.put("esther", V2.encode(), author="a", message="m", if_match=None)
    assert store.get("esther").version_id == first.version_id


def test_invalid_content_is_refused_and_nothing_is_written(
    s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(tmp_path, "bad.md", "---\nvoice: bob\n---\nHello {{name}}\n")
    status, _, err = run(capsys, "push", "esther", str(bad), "-m", "broken")
    assert status == prompts_cli.EXIT_INVALID
    assert f"{bad}:2:8: error:" in err and "[invalid_value]" in err
    assert f"{bad}:4:7: error:" in err and "[unfilled_placeholder]" in err
    assert "nothing was written" in err
    assert versions(s3) == []
    # Also when the assistant exists: its history does not move.
    assert run(capsys, "push", "esther", str(write(tmp_path, "a.md", V1)), "-m", "one")[0] == 0
    assert run(capsys, "push", "esther", str(bad), "-m", "broken")[0] == prompts_cli.EXIT_INVALID
    assert len(versions(s3)) == 1


def test_the_store_refuses_invalid_content_too(s3: Any) -> None:
    # The API and the web page write through the store, not the CLI: it validates as well.
    from actors.errors import PromptRejected

    store = PromptVersions(client=s3, bucket=BUCKET, prefix=PREFIX, max_bytes=100)
    with pytest.raises(PromptRejected) as info:
        store.put("esther", b"x" * 101, author="a", message="m", if_match=None)
    assert info.value.report is not None
    with pytest.raises(PromptRejected, match="message must not be empty"):
        store.put("esther", b"Hi", author="a", message=" ", if_match=None)
    assert versions(s3) == []


@pytest.mark.parametrize(
    ("status_to_set", "said"), [(None, "never enabled"), ("Suspended", "suspended")]
)
def test_versioning_off_is_reported_clearly(
    aws_env: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    status_to_set: str | None,
    said: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROMPTS_S3_BUCKET", BUCKET)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        if status_to_set == "Suspended":
            client.put_bucket_versioning(
                Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"}
            )
            client.put_bucket_versioning(
                Bucket=BUCKET, VersioningConfiguration={"Status": "Suspended"}
            )
        path = write(tmp_path, "a.md", V1)
        status, _, err = run_from_env(capsys, "push", "esther", str(path), "-m", "one")
        assert status == prompts_cli.EXIT_S3
        assert err.count("\n") == 1  # one clear line
        assert f"bucket {BUCKET!r} does not keep versions (versioning {said})" in err
        assert "put-bucket-versioning" in err
        assert "Contents" not in client.list_objects_v2(Bucket=BUCKET)


def test_missing_assistant_and_version_exit_4(
    s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(capsys, "show", "nobody")
    assert status == prompts_cli.EXIT_NOT_FOUND and "nobody" in err
    assert run(capsys, "push", "esther", str(write(tmp_path, "a.md", V1)), "-m", "one")[0] == 0
    status, _, err = run(capsys, "show", "esther", "--version", "no-such-version")
    assert status == prompts_cli.EXIT_NOT_FOUND and "no-such-version" in err
    status, _, err = run(capsys, "diff", "esther")
    assert status == prompts_cli.EXIT_NOT_FOUND and "only one version" in err
    status, _, err = run(capsys, "history", "../etc")
    assert status == prompts_cli.EXIT_USAGE and "assistant name" in err


def test_validate_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    good = write(tmp_path, "good.md", V1)
    warn = write(tmp_path, "warn.md", "| a | b |\n|---|---|\n")
    bad = write(tmp_path, "bad.md", "---\ntemperature: 3\n---\nHi\n")
    status, out, _ = run(capsys, "validate", str(good), str(warn))
    assert status == 0
    assert f"{good}: ok (0 error(s), 0 warning(s))" in out
    assert f"{warn}:1:1: warning:" in out and f"{warn}: ok (0 error(s), 1 warning(s))" in out
    status, out, _ = run(capsys, "validate", str(good), str(bad))
    assert status == prompts_cli.EXIT_INVALID
    assert f"{bad}:2:14: error:" in out and "[out_of_range]" in out
    status, out, _ = run(capsys, "validate", "--json", str(bad))
    assert status == prompts_cli.EXIT_INVALID
    report = json.loads(out)[str(bad)]
    assert report["ok"] is False and report["issues"][0]["code"] == "out_of_range"
    # PROMPT_MAX_BYTES is the daemon's limit, and the CLI applies the same one.
    monkeypatch.setenv("PROMPT_MAX_BYTES", "10")
    status, out, _ = run(capsys, "validate", str(good))
    assert status == prompts_cli.EXIT_INVALID and "[too_large]" in out


# S3 operation -> the IAM action that authorises it (HEAD/GET of a version need *Version).
_ACTION_OF = {
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "ListObjectsV2": "s3:ListBucket",
    "ListObjectVersions": "s3:ListBucketVersions",
    "GetBucketVersioning": "s3:GetBucketVersioning",
}


def test_every_request_the_admin_makes_is_allowed_by_its_policy(
    s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    real_make = versions_module.make_prompt_versions

    def recording(settings: Any, **kw: Any) -> PromptVersions:
        store = real_make(settings, **kw)
        store.client.meta.events.register(
            "provide-client-params.s3.*",
            lambda params, model, **_: seen.append((model.name, dict(params))),
        )
        return store

    monkeypatch.setattr(prompts_cli, "make_prompt_versions", recording)
    _SHARED.clear()  # every command below builds its client from the environment
    a, b = write(tmp_path, "a.md", V1), write(tmp_path, "b.md", V2)
    assert run(capsys, "push", "esther", str(a), "-m", "one")[0] == 0
    assert run(capsys, "push", "esther", str(b), "-m", "two")[0] == 0
    old = versions(s3)[1]["VersionId"]
    for argv in (["list"], ["history", "esther"], ["diff", "esther"], ["show", "esther"],
                 ["pull", "esther", "-o", str(tmp_path / "p.md")],
                 ["rollback", "esther", old, "-m", "back"]):  # fmt: skip
        assert run(capsys, *argv)[0] == 0, argv
    policy = json.loads(ADMIN_POLICY.read_text())
    allowed = {
        a
        for s in policy["Statement"]
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    needed = set()
    for operation, params in seen:
        action = _ACTION_OF[operation]
        if "VersionId" in params:
            action += "Version"
        needed.add(action)
        if operation == "PutObject":  # the policy only allows conditional writes
            assert "IfMatch" in params or "IfNoneMatch" in params
        if operation in ("ListObjectsV2", "ListObjectVersions"):
            assert params["Prefix"].startswith(PREFIX)  # the policy's s3:prefix condition
    assert needed <= allowed, needed - allowed
    assert {"s3:PutObject", "s3:GetObjectVersion", "s3:ListBucketVersions"} <= needed


def test_an_unchanged_push_writes_nothing(
    s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "a.md", V1)
    assert run(capsys, "push", "esther", str(path), "-m", "one")[0] == 0
    status, out, _ = run(capsys, "push", "esther", str(path), "-m", "again")
    assert status == 0 and "unchanged" in out
    assert len(versions(s3)) == 1


def test_a_deleted_assistant_shows_in_history_and_can_be_restored(
    s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "push", "esther", str(write(tmp_path, "a.md", V1)), "-m", "one")[0] == 0
    kept = versions(s3)[0]["VersionId"]
    s3.delete_object(Bucket=BUCKET, Key=KEY)  # by hand: S3 adds a delete marker
    status, out, _ = run(capsys, "history", "esther")
    lines = out.splitlines()
    assert status == 0 and len(lines) == 2
    assert lines[0].startswith("* ") and lines[0].endswith("(deleted)")
    assert lines[1].startswith(f"  {kept}\t")
    assert run(capsys, "show", "esther")[0] == prompts_cli.EXIT_NOT_FOUND
    status, out, err = run(capsys, "rollback", "esther", kept, "-m", "restore")
    assert status == 0, err
    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == V1.encode()
    assert len(versions(s3)) == 2  # the restore is a new version; the old one is kept


async def test_the_async_store_runs_the_same_operations_in_threads(s3: Any) -> None:
    import trio

    from promptadmin.async_versions import AsyncPromptVersions

    store = AsyncPromptVersions(
        PromptVersions(client=s3, bucket=BUCKET, prefix=PREFIX),
        limiter=trio.CapacityLimiter(1),  # moto is not thread-safe
    )
    await store.check_versioning()
    first = await store.put("esther", V1.encode(), author="a", message="one", if_match=None)
    second = await store.put("esther", V2.encode(), author="b", message="two", if_match=first.etag)
    with pytest.raises(PromptConflict):
        await store.put("esther", b"late", author="c", message="late", if_match=first.etag)
    back = await store.rollback(
        "esther", first.version_id, author="a", message="back", if_match=second.etag
    )
    history = await store.history("esther")
    assert [v.version_id for v in history] == [back.version_id, second.version_id, first.version_id]
    assert history[0].metadata.rollback_of == first.version_id
    assert (await store.get("esther")).body == V1.encode()
    assert [s.name for s in await store.list_assistants()] == ["esther"]
