"""``aws/*.yaml``: every CloudFormation template passes cfn-lint (informational checks on),
and the ECS, EC2 and bucket templates hold what the deployment relies on."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint
from cfnlint.decode.cfn_yaml import loads as load_cfn_yaml

from tests.deploy.shared import DEPLOY, ROOT, settings_names

AWS = ROOT / "aws"
ECS = AWS / "novavoice-ecs.yaml"
EC2 = AWS / "novavoice-ec2.yaml"
BUCKET = AWS / "prompts-bucket.yaml"
# Variables of the CloudWatch EMF writer (the `serve --workers` work of issue 12).
EMF_VARIABLES = {"METRICS_CLOUDWATCH_EMF", "METRICS_CLOUDWATCH_EMF_PATH"}

Template = dict[str, Any]


def lint_template(text: str) -> list[str]:
    matches = lint(text, config=ManualArgs(include_checks=["I"], regions=["us-east-1"]))
    return [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches]


def load(path: Path) -> Template:
    template: Template = load_cfn_yaml(path.read_text())
    return template


def resources(template: Template, kind: str) -> list[dict[str, Any]]:
    return [r for r in template["Resources"].values() if r["Type"] == kind]


@pytest.mark.parametrize("path", sorted(AWS.glob("*.yaml")), ids=lambda p: p.name)
def test_template_passes_cfn_lint(path: Path) -> None:
    assert lint_template(path.read_text()) == []


def test_cfn_lint_rejects_a_broken_ecs_template() -> None:
    text = ECS.read_text()
    broken = text.replace("LaunchType: FARGATE", "LaunchType: FARGATTE")
    assert broken != text
    assert any(p.startswith("E") for p in lint_template(broken))


# --- IAM: the same grants as the policy documents in aws/ ------------------------------------


def substitute(value: Any) -> Any:
    """Resolve the few !Sub forms the roles use, with the templates' default parameters."""
    if isinstance(value, dict) and "Fn::Sub" in value:
        text = value["Fn::Sub"]
        for name, replacement in {
            "AWS::Partition": "aws",
            "PromptsBucketName": "nova-sonic-prompts",
            "PromptsPrefix": "assistants/",
        }.items():
            text = text.replace("${" + name + "}", replacement)
        return text
    if isinstance(value, list):
        return [substitute(v) for v in value]
    return value


def grants(statements: list[dict[str, Any]]) -> set[tuple[str, str]]:
    out = set()
    for stmt in statements:
        assert stmt["Effect"] == "Allow"
        actions = stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]
        res = substitute(stmt["Resource"])
        for action in actions:
            for resource in res if isinstance(res, list) else [res]:
                out.add((action, resource))
    return out


def policy_file_grants(name: str) -> set[tuple[str, str]]:
    document = json.loads((AWS / name).read_text())
    return grants(document["Statement"])


@pytest.mark.parametrize(("path", "role"), [(ECS, "TaskRole"), (EC2, "InstanceRole")])
def test_daemon_role_holds_the_read_and_invoke_policies(path: Path, role: str) -> None:
    props = load(path)["Resources"][role]["Properties"]
    policies = {p["PolicyName"]: p["PolicyDocument"]["Statement"] for p in props["Policies"]}
    assert grants(policies["prompts-read"]) == policy_file_grants("s3-prompt-read-policy.json")
    assert grants(policies["nova-sonic-invoke"]) == policy_file_grants(
        "bedrock-nova-sonic-invoke-policy.json"
    )


def test_ec2_instance_profile_wraps_the_instance_role() -> None:
    [profile] = resources(load(EC2), "AWS::IAM::InstanceProfile")
    assert profile["Properties"]["Roles"] == [{"Ref": "InstanceRole"}]


# --- ECS: load balancer, drain, autoscaling, logs ----------------------------------------------


def default(template: Template, parameter: str) -> Any:
    return template["Parameters"][parameter]["Default"]


def test_ecs_load_balancer_suits_websockets_and_outlasts_the_drain() -> None:
    template = load(ECS)
    drain = int(default(template, "DrainTimeoutMs")) / 1000
    [tg] = resources(template, "AWS::ElasticLoadBalancingV2::TargetGroup")
    attrs = {a["Key"]: a["Value"] for a in tg["Properties"]["TargetGroupAttributes"]}
    assert int(attrs["deregistration_delay.timeout_seconds"]) > drain
    assert attrs["deregistration_delay.connection_termination.enabled"] == "false"
    assert tg["Properties"]["Port"] == 8080 and tg["Properties"]["TargetType"] == "ip"
    [listener] = resources(template, "AWS::ElasticLoadBalancingV2::Listener")
    assert listener["Properties"]["Protocol"] == "TLS"
    idle = {a["Key"]: a["Value"] for a in listener["Properties"]["ListenerAttributes"]}
    assert int(idle["tcp.idle_timeout.seconds"]) > 350  # the NLB default cuts quiet calls
    [lb] = resources(template, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert lb["Properties"]["Type"] == "network"


def test_ecs_task_runs_the_image_unprivileged_with_drain_time() -> None:
    template = load(ECS)
    drain = int(default(template, "DrainTimeoutMs")) / 1000
    [task] = resources(template, "AWS::ECS::TaskDefinition")
    [container] = task["Properties"]["ContainerDefinitions"]
    assert container["StopTimeout"] > drain
    assert container["User"].split(":")[0] == "10001"  # the Dockerfile's user
    assert container["ReadonlyRootFilesystem"] is True
    assert container["Command"][:2] == ["serve", "--workers"]
    assert "/healthz" in " ".join(container["HealthCheck"]["Command"])
    names = {e["Name"] for e in container["Environment"]} | {
        s["Name"] for s in container["Secrets"]
    }
    assert names <= settings_names() | EMF_VARIABLES
    assert {"PROMPTS_S3_BUCKET", "DRAIN_TIMEOUT_MS", "METRICS_CLOUDWATCH_EMF"} <= names
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"
    assert container["LogConfiguration"]["Options"]["awslogs-group"] == {"Ref": "LogGroup"}
    assert resources(template, "AWS::Logs::LogGroup")
    assert task["Properties"]["TaskRoleArn"] == {"Fn::GetAtt": ["TaskRole", "Arn"]}


def active_calls_metric(spec: dict[str, Any]) -> None:
    custom = spec["CustomizedMetricSpecification"]
    assert custom["Namespace"] == "NovaVoice"
    assert custom["MetricName"] == "ActiveCalls"
    assert custom["Dimensions"] == [{"Name": "Service", "Value": "novavoice"}]


def test_both_scale_on_active_calls() -> None:
    [ecs_policy] = resources(load(ECS), "AWS::ApplicationAutoScaling::ScalingPolicy")
    assert ecs_policy["Properties"]["PolicyType"] == "TargetTrackingScaling"
    active_calls_metric(ecs_policy["Properties"]["TargetTrackingScalingPolicyConfiguration"])
    [ec2_policy] = resources(load(EC2), "AWS::AutoScaling::ScalingPolicy")
    assert ec2_policy["Properties"]["PolicyType"] == "TargetTrackingScaling"
    active_calls_metric(ec2_policy["Properties"]["TargetTrackingConfiguration"])


@pytest.mark.parametrize("path", [ECS, EC2], ids=["ecs", "ec2"])
def test_missing_prompt_alarm(path: Path) -> None:
    alarms = resources(load(path), "AWS::CloudWatch::Alarm")
    [alarm] = [a for a in alarms if a["Properties"]["MetricName"] == "PromptLoadFailures"]
    props = alarm["Properties"]
    assert props["Namespace"] == "NovaVoice"
    dims = {d["Name"]: d["Value"] for d in props["Dimensions"]}
    assert dims == {"Service": "novavoice", "Reason": "not_found"}
    assert props["Statistic"] == "Sum"
    assert props["ComparisonOperator"] == "GreaterThanThreshold" and props["Threshold"] == 0


# --- EC2: the systemd unit ---------------------------------------------------------------------


def test_ec2_installs_the_systemd_unit_and_its_environment_file() -> None:
    user_data = load(EC2)["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"][
        "UserData"
    ]["Fn::Base64"]["Fn::Sub"]
    unit = DEPLOY / "systemd" / "novavoice.service"
    assert f"/opt/novavoice-src/{unit.relative_to(ROOT)}" in user_data
    env_file = re.search(r"^EnvironmentFile=(\S+)$", unit.read_text(), re.M)
    assert env_file and f"cat > {env_file[1]} <<ENV" in user_data
    body = user_data.split("<<ENV\n", 1)[1].split("\nENV\n", 1)[0]
    names = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", body, re.M))
    assert names <= settings_names() | EMF_VARIABLES
    assert "requirements/daemon.txt" in user_data and "--no-deps" in user_data
    # The admin port stays on loopback on a host (no NetworkPolicy there).
    assert "NOVAVOICE_ADMIN_LISTEN=127.0.0.1:" in body


# --- the prompts bucket ------------------------------------------------------------------------


def test_bucket_expires_noncurrent_versions_and_offers_both_backups() -> None:
    template = load(BUCKET)
    [bucket] = resources(template, "AWS::S3::Bucket")
    [rule] = bucket["Properties"]["LifecycleConfiguration"]["Rules"]
    assert rule["Status"] == "Enabled"
    assert "NoncurrentDays" in rule["NoncurrentVersionExpiration"]
    assert set(template["Parameters"]["BackupMode"]["AllowedValues"]) == {
        "none",
        "replication",
        "aws-backup",
    }
    assert default(template, "BackupMode") == "none"
    replication = bucket["Properties"]["ReplicationConfiguration"]["Fn::If"]
    assert replication[0] == "Replicate"
    assert replication[1]["Rules"][0]["Status"] == "Enabled"
    conditions = template["Conditions"]
    assert conditions["Replicate"] == {"Fn::Equals": [{"Ref": "BackupMode"}, "replication"]}
    assert conditions["AwsBackup"] == {"Fn::Equals": [{"Ref": "BackupMode"}, "aws-backup"]}
    for kind in ("AWS::Backup::BackupPlan", "AWS::Backup::BackupSelection"):
        [res] = resources(template, kind)
        assert res["Condition"] == "AwsBackup"
    [selection] = resources(template, "AWS::Backup::BackupSelection")
    assert selection["Properties"]["BackupSelection"]["Resources"] == [
        {"Fn::GetAtt": ["PromptsBucket", "Arn"]}
    ]
