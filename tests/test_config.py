"""Configuration: defaults, units, and one clear line naming the variable on bad input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from dotenv import dotenv_values

from actors.errors import ConfigError
from actors.sonic import events
from promptadmin.settings import AdminSettings, admin_settings_from_mapping, check_fail_closed
from sessions.config import ENV, Settings, load_settings, settings_from_mapping, variables


def test_defaults_match_the_origin_service() -> None:
    s = settings_from_mapping({})
    assert s == Settings()
    assert s.prompts.bucket == "nova-sonic-prompts"
    assert s.prompts.prefix == "assistants/"
    assert s.prompts.cache_ttl == 300.0
    assert s.sonic.model_id == "amazon.nova-2-sonic-v1:0"
    assert s.calls.voice_id == events.DEFAULT_VOICE == "matthew"


def test_prompt_cache_timeout_is_milliseconds() -> None:
    assert settings_from_mapping({"PROMPT_CACHE_TIMEOUT": "1500"}).prompts.cache_ttl == 1.5


def test_model_parameters_and_rotation_are_settable() -> None:
    s = settings_from_mapping(
        {
            "NOVA_SONIC_MAX_TOKENS": "2048",
            "NOVA_SONIC_TOP_P": "0.5",
            "NOVA_SONIC_TEMPERATURE": "0.2",
            "NOVA_SONIC_ROTATE_AFTER_MS": "300000",
            "PROMPT_LOAD_TIMEOUT_MS": "3000",
        }
    )
    assert (s.calls.max_tokens, s.calls.top_p, s.calls.temperature) == (2048, 0.5, 0.2)
    assert s.calls.rotate_after == 300.0
    assert s.prompts.budget.cache_fetch_timeout == 3.0


def test_the_prompt_budget_bounds_every_layer() -> None:
    for ms in ("500", "2000", "3000", "5000", "30000"):
        budget = settings_from_mapping({"PROMPT_LOAD_TIMEOUT_MS": ms}).prompts.budget
        total = int(ms) / 1000
        assert budget.call_timeout == budget.cache_fetch_timeout == total
        botocore_worst = budget.s3_max_attempts * (
            budget.s3_connect_timeout + budget.s3_read_timeout
        ) + 1.0 * (budget.s3_max_attempts - 1)
        assert botocore_worst <= total + 1e-9
    assert settings_from_mapping({}).prompts.budget.s3_max_attempts == 2


def test_a_renamed_variable_fails_with_a_pointer_to_its_new_name() -> None:
    with pytest.raises(ConfigError, match="PROMPT_LOAD_TIMEOUT_MS"):
        settings_from_mapping({"PROMPT_FETCH_TIMEOUT_MS": "5000"})


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
        ("NOVA_SONIC_TOP_P", "1.5"),
        ("NOVA_SONIC_TEMPERATURE", "warm"),
        ("NOVA_SONIC_MAX_TOKENS", "0"),
        ("NOVA_SONIC_ROTATE_AFTER_MS", "600000"),
        ("PROMPT_LOAD_TIMEOUT_MS", "0"),
        ("DEFAULT_ASSISTANT", "../etc"),
        ("NOVAVOICE_LOG_LEVEL", "loud"),
        ("AWS_DEFAULT_REGION", "moon"),
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
    assert s.prompts.bucket == "from-environ"
    assert s.prompts.cache_ttl == 1.0


def test_region_falls_back_to_default_region() -> None:
    assert settings_from_mapping({"AWS_DEFAULT_REGION": "eu-west-1"}).aws_region == "eu-west-1"
    s = settings_from_mapping({"AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "eu-west-1"})
    assert s.aws_region == "us-west-2"


def test_env_example_documents_every_variable_with_its_default() -> None:
    root = Path(__file__).parents[1]
    example = {k: v for k, v in dotenv_values(root / ".env.example").items() if v is not None}
    # Every value shown is the default...
    assert settings_from_mapping(example) == Settings()
    # ...every setting has a variable, and every variable is shown...
    names = [field.metadata[ENV] for _, field in variables()]
    assert len(names) == len(set(names)) > 30
    assert set(names) <= set(example)
    # ...and nothing is shown that the settings (or the prompt admin's) do not read.
    assert set(example) <= set(names) | admin_variables()


def test_env_example_values_are_the_defaults_not_just_blank() -> None:
    root = Path(__file__).parents[1]
    example = dotenv_values(root / ".env.example")
    defaults = Settings()
    for section, field in variables():
        holder = getattr(defaults, section) if section else defaults
        shown = example.get(field.metadata[ENV])
        # A setting whose default is not "unset" (None, or an empty list) shows a value, so
        # the file teaches the unit.
        if getattr(holder, field.name) not in (None, ()):
            assert shown, field.metadata[ENV]


def admin_variables() -> set[str]:
    """The variables the prompt admin (novavoice admin) reads, beyond the daemon's."""
    source = (Path(__file__).parents[1] / "promptadmin" / "settings.py").read_text()
    return set(re.findall(r'_read\(\s*env,\s*"([A-Z0-9_]+)"', source))


def test_env_example_documents_the_prompt_admins_variables_with_their_defaults() -> None:
    root = Path(__file__).parents[1]
    example = {k: v for k, v in dotenv_values(root / ".env.example").items() if v is not None}
    assert admin_settings_from_mapping(example) == AdminSettings()
    read = admin_variables()
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


def test_the_daemons_refresh_token_is_a_secret_setting() -> None:
    s = settings_from_mapping({"DAEMON_ADMIN_TOKEN": "refresh-token-1"})
    assert s.listen.admin_token == "refresh-token-1"
    assert "refresh-token-1" not in repr(s)
    with pytest.raises(ConfigError):
        settings_from_mapping({"DAEMON_ADMIN_TOKEN": "short"})
