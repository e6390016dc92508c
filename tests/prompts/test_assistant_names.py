"""The assistant naming rule: hostile names refused, accepted names stay under the prefix."""

from __future__ import annotations

import posixpath
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.assistant_names import MAX_NAME_LENGTH, prompt_key, validate_assistant_name
from actors.errors import InvalidAssistantName

PREFIX = "assistants/"

HOSTILE = [
    ("", "empty"),
    ("..", "parent directory"),
    ("../esther", "traversal"),
    ("esther/../../etc/passwd", "traversal in the middle"),
    ("/esther", "absolute"),
    ("esther/", "slash"),
    ("assistants/esther", "nested key"),
    ("..\\esther", "backslash traversal"),
    ("esther\\x", "backslash"),
    ("%2e%2e", "percent-encoded dots"),
    ("%2e%2e%2festher", "percent-encoded traversal"),
    ("esther%00", "percent-encoded NUL"),
    ("esther\x00", "NUL"),
    ("esther\x00.md", "NUL before extension"),
    (" esther", "leading space"),
    ("esther ", "trailing space"),
    ("es ther", "inner space"),
    ("esther\n", "trailing newline"),
    ("esther\t", "tab"),
    ("esther\r\nX-Header: y", "header injection"),
    ("\u0435sther", "Cyrillic e look-alike"),
    ("esthe\u0433", "Cyrillic look-alike inside"),
    ("\uff45sther", "fullwidth e"),
    ("\uff45\uff53\uff54\uff48\uff45\uff52", "all fullwidth"),
    ("esther\u200b", "zero-width space"),
    ("e\u0301sther", "combining accent"),
    ("ésther", "accented letter"),
    ("esther.md", "extension"),
    ("esther.", "trailing dot"),
    (".esther", "hidden file"),
    ("a" * (MAX_NAME_LENGTH + 1), "one too long"),
    ("a" * 10_000, "absurdly long"),
    ("-esther", "leading hyphen"),
    ("esther-", "trailing hyphen"),
    ("support--agent", "double hyphen"),
    ("-", "lone hyphen"),
    ("Esther", "uppercase"),
    ("ESTHER", "all caps"),
    ("support_agent", "underscore"),
    ("esther*", "wildcard"),
    ("esther?versionId=1", "query string"),
    ("esther#frag", "fragment"),
    ("~esther", "tilde"),
]


@pytest.mark.parametrize(("name", "why"), HOSTILE, ids=[why for _, why in HOSTILE])
def test_hostile_names_are_refused(name: str, why: str) -> None:
    with pytest.raises(InvalidAssistantName) as info:
        prompt_key(PREFIX, name)
    message = str(info.value)
    assert "\n" not in message and "\x00" not in message
    assert len(message) < 300


@pytest.mark.parametrize("name", [None, 42, b"esther", ["esther"]])
def test_non_strings_are_refused(name: object) -> None:
    with pytest.raises(InvalidAssistantName):
        validate_assistant_name(name)


@pytest.mark.parametrize(
    "name", ["esther", "support-agent", "a", "0", "tier2-billing-v3", "a" * MAX_NAME_LENGTH]
)
def test_good_names_map_to_their_key(name: str) -> None:
    assert validate_assistant_name(name) == name
    assert prompt_key(PREFIX, name) == f"{PREFIX}{name}.md"


def _stays_under_prefix(key: str) -> bool:
    decoded = unquote(key)
    normalised = posixpath.normpath(decoded)
    return (
        key.startswith(PREFIX)
        and normalised.startswith(PREFIX)
        and posixpath.dirname(normalised) + "/" == PREFIX
        and key.count("/") == PREFIX.count("/")
        and "\\" not in key
        and key.isascii()
        and key.isprintable()
    )


@given(st.text(max_size=80))
def test_any_accepted_name_yields_a_key_inside_the_prefix(name: str) -> None:
    try:
        key = prompt_key(PREFIX, name)
    except InvalidAssistantName:
        return
    assert _stays_under_prefix(key)
    assert key == f"{PREFIX}{name}.md"


@given(st.from_regex(r"[a-z0-9]{1,20}(-[a-z0-9]{1,20}){0,2}", fullmatch=True))
def test_every_name_matching_the_rule_is_accepted(name: str) -> None:
    assert _stays_under_prefix(prompt_key(PREFIX, name))


@given(st.text(alphabet=st.sampled_from("a-./\\%\x00 Ee\u0435"), min_size=1, max_size=12))
def test_names_built_from_dangerous_characters_stay_inside(name: str) -> None:
    try:
        key = prompt_key(PREFIX, name)
    except InvalidAssistantName:
        return
    # Only the ASCII lowercase letters and inner single hyphens survive this alphabet.
    assert set(name) <= {"a", "e", "-"}
    assert _stays_under_prefix(key)
