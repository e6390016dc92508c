"""Configuration: defaults, units, and one clear line naming the variable on bad input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from dotenv import dotenv_values

from actors.errors import ConfigError
from promptadmin.settings import AdminSettings, admin_settings_from_mapping, check_fail_closed
from sessions.config import Settings, load_settings, settings_from_mapping


def test_defaults_match_the_origin_service() -> None:
    s = settings_from_mapping({})
    assert s == Settings()
    assert s.prompts_bucket == "nova-sonic-prompts"
    assert s.prompts_prefix == "assistants/"
    assert s.prompt_cache_ttl == 300.0
    assert s.sonic_model_id == "amazon.nova-2-sonic-v1:0"


def test_prompt_cache_timeout_is_milliseconds() -> None:
    assert settings_from_mapping({"PROMPT_CACHE_TIMEOUT": "1500"}).prompt_cache_ttl == 1.5


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PROMPT_CACHE_TIMEOUT", "five minutes"),
        ("PROMPT_CACHE_TIMEOUT", "-1"),
        ("PROMPTS_S3_BUCKET", "Not_A_Bucket"),
        ("PROMPTS_S3_PREFIX", "assistants"),
        ("PROMPTS_S3_PREFIX", "../assistants/"),
        ("AWS_REGION", "moon"),
        ("PROMPT_CACHE_MAX_ENTRIES", "0"),
        ("S3_MAX_CONNECTIONS", "ten"),
        ("NOVA_SONIC_MODEL_ID", "has space"),
    ],
)
def test_bad_values_name_the_variable_in_one_line(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_mapping({name: value})
    message = str(info.value)
    assert message.startswith(f"{name}=")
    assert "\n" not in message


def test_environment_overrides_dotenv(tmp_path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("PROMPTS_S3_BUCKET=from-dotenv\nPROMPT_CACHE_TIMEOUT=1000\n")
    s = load_settings({"PROMPTS_S3_BUCKET": "from-environ"}, dotenv_path=env_file)
    assert s.prompts_bucket == "from-environ"
    assert s.prompt_cache_ttl == 1.0


def test_region_falls_back_to_default_region() -> None:
    assert settings_from_mapping({"AWS_DEFAULT_REGION": "eu-west-1"}).aws_region == "eu-west-1"
    s = settings_from_mapping({"AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "eu-west-1"})
    assert s.aws_region == "us-west-2"


def test_env_example_documents_every_variable_with_its_default() -> None:
    root = Path(__file__).parents[1]
    example = {k: v for k, v in dotenv_values(root / ".env.example").items() if v is not None}
    # Every value shown is the default...
    assert settings_from_mapping(example) == Settings()
    # ...and every variable the configuration reads is shown.
    source = (root / "sessions" / "config.py").read_text()
    read = set(re.findall(r'_read\(\s*env,\s*"([A-Z0-9_]+)"', source))
    assert read, "the pattern no longer finds the variables config.py reads"
    assert read - {"AWS_DEFAULT_REGION"} <= set(example)


def test_env_example_documents_the_prompt_admins_variables_with_their_defaults() -> None:
    root = Path(__file__).parents[1]
    example = {k: v for k, v in dotenv_values(root / ".env.example").items() if v is not None}
    assert admin_settings_from_mapping(example) == AdminSettings()
    source = (root / "promptadmin" / "settings.py").read_text()
    read = set(re.findall(r'_read\(\s*env,\s*"([A-Z0-9_]+)"', source))
    assert read >= {"ADMIN_TOKENS", "ADMIN_AUDIT_LOG", "NOVAVOICE_DAEMONS", "DAEMON_ADMIN_TOKEN"}
    assert read <= set(example)


def test_admin_tokens_and_daemons_parse_and_bad_values_name_the_variable() -> None:
    s = admin_settings_from_mapping(
        {
            "ADMIN_TOKENS": "alice:alice-token-0123456789, bob:bob-token-0123456789ab",
            "NOVAVOICE_DAEMONS": "http://10.0.0.5:9090/, http://10.0.0.6:9090",
        }
    )
    assert dict(s.tokens) == {"alice": "alice-token-0123456789", "bob": "bob-token-0123456789ab"}
    assert s.daemons == ("http://10.0.0.5:9090", "http://10.0.0.6:9090")
    assert "alice-token" not in repr(s)
    for name, value in [
        ("ADMIN_TOKENS", "alice"),
        ("ADMIN_TOKENS", "alice:tiny1"),
        ("ADMIN_TOKENS", "a:same-token-0123456789,b:same-token-0123456789"),
        ("NOVAVOICE_DAEMONS", "10.0.0.5:9090"),
        ("DAEMON_ADMIN_TOKEN", "tiny2"),
    ]:
        with pytest.raises(ConfigError) as info:
            admin_settings_from_mapping({name: value})
        assert str(info.value).startswith(f"{name}:")
        assert "\n" not in str(info.value)
        if name != "NOVAVOICE_DAEMONS":  # a URL may be echoed; secrets never are
            assert value.split(":")[-1] not in str(info.value)


def test_the_admin_fails_closed_beyond_loopback_without_tokens() -> None:
    check_fail_closed("127.0.0.1", AdminSettings())
    check_fail_closed("::1", AdminSettings())
    with pytest.raises(ConfigError) as info:
        check_fail_closed("0.0.0.0", AdminSettings())
    assert str(info.value).startswith("ADMIN_TOKENS is not set")
    assert "\n" not in str(info.value)
    check_fail_closed("0.0.0.0", AdminSettings(tokens={"alice": "alice-token-0123456789"}))
