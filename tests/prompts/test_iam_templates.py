"""IAM policies and the bucket template in ``aws/``: parseable, least privilege, lint-clean."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint
from cfnlint.decode.cfn_yaml import loads as load_cfn_yaml

AWS_DIR = Path(__file__).parents[2] / "aws"
READ_POLICY = AWS_DIR / "s3-prompt-read-policy.json"
ADMIN_POLICY = AWS_DIR / "s3-prompt-admin-policy.json"
BEDROCK_POLICY = AWS_DIR / "bedrock-nova-sonic-invoke-policy.json"
BUCKET_TEMPLATE = AWS_DIR / "prompts-bucket.yaml"

# Verbs that change state; none may appear in a read policy.
WRITE_VERBS = ("Put", "Delete", "Create", "Update", "Restore", "Replicate", "Abort", "Bypass")


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def statements(path: Path) -> list[dict[str, Any]]:
    document = json.loads(path.read_text())
    assert document["Version"] == "2012-10-17"
    stmts = document["Statement"]
    return [stmts] if isinstance(stmts, dict) else list(stmts)


def lint_template(text: str) -> list[str]:
    matches = lint(text, config=ManualArgs(include_checks=["I"], regions=["us-east-1"]))
    return [f"{m.rule.id} {m.message}" for m in matches]


def policy_template(policy_path: Path) -> str:
    """Wrap a policy document in a template so cfn-lint checks it (action names included)."""
    return json.dumps(
        {
            "AWSTemplateFormatVersion": "2010-09-09",
            "Resources": {
                "Policy": {
                    "Type": "AWS::IAM::ManagedPolicy",
                    "Properties": {"PolicyDocument": json.loads(policy_path.read_text())},
                }
            },
        }
    )


@pytest.mark.parametrize("path", [READ_POLICY, ADMIN_POLICY, BEDROCK_POLICY])
def test_policies_are_allow_only_with_named_actions(path: Path) -> None:
    for stmt in statements(path):
        assert stmt["Effect"] == "Allow"
        assert not {"NotAction", "NotResource", "Principal"} & stmt.keys()
        for action in as_list(stmt["Action"]):
            assert "*" not in action and "?" not in action, action
        for resource in as_list(stmt["Resource"]):
            assert resource != "*"


def test_read_policy_grants_reads_of_the_prefix_only() -> None:
    actions: set[str] = set()
    for stmt in statements(READ_POLICY):
        actions |= set(as_list(stmt["Action"]))
        for resource in as_list(stmt["Resource"]):
            assert resource == "arn:aws:s3:::nova-sonic-prompts/assistants/*"
    assert actions == {"s3:GetObject", "s3:GetObjectVersion"}
    assert not [a for a in actions if a.split(":")[1].startswith(WRITE_VERBS)]


BUCKET_ARN = "arn:aws:s3:::nova-sonic-prompts"
PREFIX_ARN = "arn:aws:s3:::nova-sonic-prompts/assistants/*"
ADMIN_ACTIONS = {
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:PutObject",
    "s3:ListBucket",
    "s3:ListBucketVersions",
    "s3:GetBucketVersioning",
}


def admin_grants() -> dict[str, list[dict[str, Any]]]:
    """Action -> the statements granting it, in the admin policy."""
    grants: dict[str, list[dict[str, Any]]] = {}
    for stmt in statements(ADMIN_POLICY):
        for action in as_list(stmt["Action"]):
            grants.setdefault(action, []).append(stmt)
    return grants


def test_admin_policy_grants_exactly_the_admin_actions_and_no_deletion() -> None:
    grants = admin_grants()
    assert set(grants) == ADMIN_ACTIONS
    # No version (or object) can be deleted or its history rewritten.
    assert not [a for a in grants if "Delete" in a or "Restore" in a or "Lifecycle" in a]


def test_admin_policy_is_scoped_to_the_prefix() -> None:
    for action, stmts in admin_grants().items():
        for stmt in stmts:
            resources = as_list(stmt["Resource"])
            if action in {"s3:ListBucket", "s3:ListBucketVersions"}:
                # Listing is a bucket action: scoped to the prefix by the s3:prefix key.
                assert resources == [BUCKET_ARN]
                assert stmt["Condition"] == {"StringLike": {"s3:prefix": "assistants/*"}}
            elif action == "s3:GetBucketVersioning":
                assert resources == [BUCKET_ARN] and "Condition" not in stmt
            else:
                assert resources == [PREFIX_ARN], (action, resources)


def test_admin_policy_only_allows_conditional_writes() -> None:
    # Every PutObject grant requires If-Match or If-None-Match (S3's conditional-write
    # condition keys), so even a hand-made request cannot blindly overwrite a version.
    puts = admin_grants()["s3:PutObject"]
    conditions = sorted(json.dumps(stmt.get("Condition"), sort_keys=True) for stmt in puts)
    assert conditions == [
        json.dumps({"Null": {"s3:if-match": "false"}}),
        json.dumps({"Null": {"s3:if-none-match": "false"}}),
    ]


def test_bedrock_policy_is_scoped_to_nova_sonic_models() -> None:
    model_arn = re.compile(
        r"arn:aws:bedrock:(\*|[a-z]{2}(-[a-z]+)+-\d)::foundation-model/amazon\.nova(-2)?-sonic-v1:0"
    )
    for stmt in statements(BEDROCK_POLICY):
        # The bidirectional stream API is authorised by bedrock:InvokeModel (its API
        # reference says so); no separate IAM action exists for it (see the next test).
        assert as_list(stmt["Action"]) == ["bedrock:InvokeModel"]
        resources = as_list(stmt["Resource"])
        assert resources
        assert all(model_arn.fullmatch(r) for r in resources), resources
        assert any("nova-2-sonic" in r for r in resources)


@pytest.mark.parametrize("path", [READ_POLICY, ADMIN_POLICY, BEDROCK_POLICY])
def test_policies_pass_cfn_lint(path: Path) -> None:
    assert lint_template(policy_template(path)) == []


def test_cfn_lint_knows_no_bidirectional_stream_action(tmp_path: Path) -> None:
    # Guards the finding above and proves the lint really checks action names.
    bogus = tmp_path / "bogus.json"
    bogus.write_text(
        BEDROCK_POLICY.read_text().replace(
            '"bedrock:InvokeModel"', '"bedrock:InvokeModelWithBidirectionalStream"'
        )
    )
    problems = lint_template(policy_template(bogus))
    assert any(
        p.startswith("W3037") and "invokemodelwithbidirectionalstream" in p.lower()
        for p in problems
    ), problems


def test_bucket_template_passes_cfn_lint() -> None:
    assert lint_template(BUCKET_TEMPLATE.read_text()) == []


def test_cfn_lint_rejects_a_broken_template() -> None:
    good = BUCKET_TEMPLATE.read_text()
    broken = good.replace(
        "Status: Enabled\n      BucketEncryption", "Status: On\n      BucketEncryption"
    )
    assert broken != good
    assert lint_template(broken) != []


def test_bucket_is_versioned_encrypted_private_and_tls_only() -> None:
    template = load_cfn_yaml(BUCKET_TEMPLATE.read_text())
    resources = template["Resources"]
    buckets = [r for r in resources.values() if r["Type"] == "AWS::S3::Bucket"]
    assert len(buckets) == 1
    props = buckets[0]["Properties"]
    assert props["VersioningConfiguration"]["Status"] == "Enabled"
    sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"}
    block = props["PublicAccessBlockConfiguration"]
    assert all(
        block[k] is True
        for k in (
            "BlockPublicAcls",
            "BlockPublicPolicy",
            "IgnorePublicAcls",
            "RestrictPublicBuckets",
        )
    )

    policies = [r for r in resources.values() if r["Type"] == "AWS::S3::BucketPolicy"]
    assert len(policies) == 1
    stmts = policies[0]["Properties"]["PolicyDocument"]["Statement"]
    tls = [
        s
        for s in stmts
        if s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
    ]
    assert len(tls) == 1
    deny = tls[0]
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*" and deny["Action"] == "s3:*"
    # Both the bucket and every object in it are covered.
    assert len(deny["Resource"]) == 2
    assert all(s["Effect"] == "Deny" for s in stmts)
