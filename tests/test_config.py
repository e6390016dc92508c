"""Configuration: defaults, units, and one clear line naming the variable on bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from dotenv import dotenv_values

from actors.errors import ConfigError
from actors.sonic import events
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
    # ...and nothing is shown that the settings do not read.
    assert set(example) <= set(names)


def test_env_example_values_are_the_defaults_not_just_blank() -> None:
    root = Path(__file__).parents[1]
    example = dotenv_values(root / ".env.example")
    defaults = Settings()
    for section, field in variables():
        holder = getattr(defaults, section) if section else defaults
        shown = example.get(field.metadata[ENV])
        # A setting whose default is not "unset" shows a value, so the file teaches the unit.
        if getattr(holder, field.name) is not None:
            assert shown, field.metadata[ENV]
