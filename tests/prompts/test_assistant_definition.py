"""The assistant definition schema: good and bad files with their exact issues, and a
round trip of the front matter through render and validate."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.assistant_definition import (
    GREETING_MAX_CHARS,
    LANGUAGES,
    PROMPT_LONG_CHARS,
    AssistantDefinition,
    ToolSpec,
    language_instruction,
    render_definition,
    validate_definition,
)
from actors.fallback_audio import CLIP_NAME_RE
from actors.sonic.events import VOICES

MAX = 64 * 1024


def issues(raw: bytes, max_bytes: int = MAX) -> list[tuple[str, str, int, int]]:
    _, report = validate_definition(raw, max_bytes=max_bytes)
    return [(i.severity, i.code, i.line, i.column) for i in report.issues]


def errors(raw: bytes, max_bytes: int = MAX) -> list[tuple[str, int, int]]:
    return [(c, line, col) for sev, c, line, col in issues(raw, max_bytes) if sev == "error"]


def parse(raw: bytes) -> AssistantDefinition:
    definition, report = validate_definition(raw, max_bytes=MAX)
    assert definition is not None, report.to_json()
    return definition


# --- good definitions --------------------------------------------------------------------


def test_a_file_without_front_matter_is_entirely_the_prompt() -> None:
    text = "You are Esther, a calm receptionist.\nBe brief.\n"
    definition = parse(text.encode())
    assert definition == AssistantDefinition(prompt=text)
    assert definition.system_prompt() == text
    assert definition.front_matter() == {}


def test_every_setting_is_read_and_the_prompt_follows_the_front_matter() -> None:
    raw = (
        b"---\n"
        b"voice: tiffany\n"
        b"endpointing: HIGH\n"
        b"temperature: 0.2\n"
        b"top_p: 1\n"
        b"max_tokens: 300\n"
        b"language: fr-FR\n"
        b"greeting: Bonjour, cabinet du docteur Martin.\n"
        b"tools:\n"
        b"  - name: hang_up\n"
        b"    description: End the call politely\n"
        b"    kind: hang_up\n"
        b"  - name: to-reception\n"
        b"    description: Transfer to the front desk\n"
        b"    kind: transfer\n"
        b"    target: '+15551234567'\n"
        b"  - name: lookup\n"
        b"    description: Find an appointment\n"
        b"    kind: webhook\n"
        b"    url: https://hooks.example.com/lookup\n"
        b"    secret_env: LOOKUP_HOOK_SECRET\n"
        b"    timeout: 4\n"
        b"    input_schema: {type: object, properties: {day: {type: string}}}\n"
        b"---\n"
        b"Tu es Esther.\n"
    )
    d = parse(raw)
    assert (d.voice, d.endpointing, d.temperature, d.top_p, d.max_tokens, d.language) == (
        "tiffany", "HIGH", 0.2, 1.0, 300, "fr-FR",
    )  # fmt: skip
    assert isinstance(d.top_p, float)
    assert d.greeting == "Bonjour, cabinet du docteur Martin."
    assert d.prompt == "Tu es Esther.\n"
    assert d.tools == (
        ToolSpec(name="hang_up", description="End the call politely", kind="hang_up"),
        ToolSpec(
            name="to-reception",
            description="Transfer to the front desk",
            kind="transfer",
            target="+15551234567",
        ),
        ToolSpec(
            name="lookup",
            description="Find an appointment",
            kind="webhook",
            url="https://hooks.example.com/lookup",
            secret_env="LOOKUP_HOOK_SECRET",
            timeout=4.0,
            input_schema='{"properties":{"day":{"type":"string"}},"type":"object"}',
        ),
    )
    # The language is applied as one instruction after the prompt.
    assert d.system_prompt() == "Tu es Esther.\n\n" + language_instruction("fr-FR") + "\n"
    assert "French" in language_instruction("fr-FR")


def test_empty_front_matter_bom_and_crlf_are_accepted() -> None:
    assert parse(b"---\n---\nHello\n").prompt == "Hello\n"
    assert parse("\ufeffHello".encode()).prompt == "Hello"
    crlf = parse(b"---\r\nvoice: amy\r\n---\r\nLine one\r\nLine two\r\n")
    assert crlf.voice == "amy" and crlf.prompt == "Line one\r\nLine two\r\n"
    # A key with no value means "use the daemon's default".
    assert parse(b"---\nvoice:\n---\nHi\n").voice is None


# --- bad definitions: the exact errors -----------------------------------------------------

BAD: list[tuple[str, bytes, list[tuple[str, int, int]]]] = [
    ("empty file", b"", [("empty", 1, 1)]),
    ("blank file", b" \n\t\n", [("empty", 1, 1)]),
    ("not utf-8", b"Hello\ncaf\xe9\n", [("not_utf8", 2, 4)]),
    ("bell character", b"Hi\nthere\x07!\n", [("control_character", 2, 6)]),
    ("lone carriage return", b"one\rtwo\n", [("control_character", 1, 4)]),
    ("NUL in front matter", b"---\nvoice: a\x00my\n---\nHi\n", [("control_character", 2, 9)]),
    ("placeholder", b"Hello {{ caller_name }}, welcome.\n", [("unfilled_placeholder", 1, 7)]),
    ("jinja tag", b"Hi\n  {% if vip %}\n", [("unfilled_placeholder", 2, 3)]),
    (
        "placeholder in greeting",
        b"---\ngreeting: Hi {{name}}\n---\nP\n",
        [
            ("unfilled_placeholder", 2, 14),
        ],
    ),
    ("unclosed front matter", b"---\nvoice: amy\nHello\n", [("front_matter_unclosed", 1, 1)]),
    ("empty prompt", b"---\nvoice: amy\n---\n\n  \n", [("empty_prompt", 4, 1)]),
    ("nothing after front matter", b"---\nvoice: amy\n---", [("empty_prompt", 3, 4)]),
    ("yaml syntax", b"---\nvoice: [amy\n---\nHi\n", [("yaml_syntax", 3, 1)]),
    ("yaml tab indent", b"---\ntools:\n\t- x\n---\nHi\n", [("yaml_syntax", 3, 1)]),
    ("not a mapping", b"---\n- voice\n---\nHi\n", [("front_matter_not_mapping", 2, 1)]),
    ("unknown key", b"---\nvoice: amy\nvoise: amy\n---\nHi\n", [("unknown_key", 3, 1)]),
    ("duplicate key", b"---\nvoice: amy\nvoice: leo\n---\nHi\n", [("duplicate_key", 3, 1)]),
    ("unknown voice", b"---\nvoice: Amy\n---\nHi\n", [("invalid_value", 2, 8)]),
    ("voice not a string", b"---\nvoice: 3\n---\nHi\n", [("invalid_type", 2, 8)]),
    ("endpointing lowercase", b"---\nendpointing: high\n---\nHi\n", [("invalid_value", 2, 14)]),
    ("temperature too high", b"---\ntemperature: 1.5\n---\nHi\n", [("out_of_range", 2, 14)]),
    ("temperature negative", b"---\ntemperature: -0.1\n---\nHi\n", [("out_of_range", 2, 14)]),
    ("temperature NaN", b"---\ntemperature: .nan\n---\nHi\n", [("out_of_range", 2, 14)]),
    ("temperature boolean", b"---\ntemperature: yes\n---\nHi\n", [("invalid_type", 2, 14)]),
    ("top_p string", b"---\ntop_p: '0.9'\n---\nHi\n", [("invalid_type", 2, 8)]),
    ("max_tokens zero", b"---\nmax_tokens: 0\n---\nHi\n", [("out_of_range", 2, 13)]),
    ("max_tokens too big", b"---\nmax_tokens: 10001\n---\nHi\n", [("out_of_range", 2, 13)]),
    ("max_tokens float", b"---\nmax_tokens: 100.0\n---\nHi\n", [("invalid_type", 2, 13)]),
    ("language unknown", b"---\nlanguage: fr\n---\nHi\n", [("invalid_value", 2, 11)]),
    ("greeting blank", b"---\ngreeting: '  '\n---\nHi\n", [("invalid_value", 2, 11)]),
    (
        "greeting too long",
        b"---\ngreeting: " + b"a" * (GREETING_MAX_CHARS + 1) + b"\n---\nHi\n",
        [("out_of_range", 2, 11)],
    ),
    ("tools not a list", b"---\ntools: hang_up\n---\nHi\n", [("invalid_type", 2, 8)]),
    ("fallback_audio a path", b"---\nfallback_audio: ../x\n---\nHi\n", [("invalid_value", 2, 17)]),
    (
        "fallback_audio with extension",
        b"---\nfallback_audio: sorry.ulaw\n---\nHi\n",
        [("invalid_value", 2, 17)],
    ),
    (
        "fallback_audio upper case",
        b"---\nfallback_audio: Sorry\n---\nHi\n",
        [("invalid_value", 2, 17)],
    ),
    ("fallback_audio a number", b"---\nfallback_audio: 3\n---\nHi\n", [("invalid_type", 2, 17)]),
    ("tool not a mapping", b"---\ntools:\n  - hang_up\n---\nHi\n", [("invalid_type", 3, 5)]),
    (
        "tool missing keys",
        b"---\ntools:\n  - name: x\n---\nHi\n",
        [("missing_key", 3, 5), ("missing_key", 3, 5)],
    ),
    (
        "tool unknown key and bad kind",
        b"---\ntools:\n  - name: x\n    description: d\n    kind: hangup\n    foo: 1\n---\nHi\n",
        [("invalid_value", 5, 11), ("unknown_key", 6, 5)],
    ),
    (
        "webhook without url or secret",
        b"---\ntools:\n  - name: w\n    description: d\n    kind: webhook\n---\nHi\n",
        [("missing_key", 3, 5), ("missing_key", 3, 5)],
    ),
    (
        "webhook bad url and timeout",
        b"---\ntools:\n  - name: w\n    description: d\n    kind: webhook\n"
        b"    url: ftp://x\n    timeout: 60\n    secret_env: S\n---\nHi\n",
        [("invalid_value", 6, 10), ("out_of_range", 7, 14)],
    ),
    (
        "webhook plain http beyond loopback, secret inline",
        b"---\ntools:\n  - name: w\n    description: d\n    kind: webhook\n"
        b"    url: http://hooks.example.com/x\n    secret_env: my secret\n---\nHi\n",
        [("invalid_value", 6, 10), ("invalid_value", 7, 17)],
    ),
    (
        "secret_env on a transfer",
        b"---\ntools:\n  - name: t\n    description: d\n    kind: transfer\n"
        b"    target: '+15551234567'\n    secret_env: S\n---\nHi\n",
        [("invalid_value", 7, 17)],
    ),
    (
        "transfer bad target",
        b"---\ntools:\n  - name: t\n    description: d\n    kind: transfer\n"
        b"    target: '5551234'\n---\nHi\n",
        [("invalid_value", 6, 13)],
    ),
    (
        "hang_up with a url",
        b"---\ntools:\n  - name: h\n    description: d\n    kind: hang_up\n"
        b"    url: https://x.example\n---\nHi\n",
        [("invalid_value", 6, 10)],
    ),
    (
        "schema not an object",
        b"---\ntools:\n  - name: h\n    description: d\n    kind: hang_up\n"
        b"    input_schema: {type: string}\n---\nHi\n",
        [("invalid_value", 6, 19)],
    ),
    (
        "duplicate tool names",
        b"---\ntools:\n  - {name: h, description: d, kind: hang_up}\n"
        b"  - {name: h, description: e, kind: hang_up}\n---\nHi\n",
        [("duplicate_key", 4, 5)],
    ),
    (
        "several errors, in file order",
        b"---\ntemperature: 2\nvoice: bob\n---\nHi {{x}}\x01\n",
        [
            ("out_of_range", 2, 14),
            ("invalid_value", 3, 8),
            ("unfilled_placeholder", 5, 4),
            ("control_character", 5, 9),
        ],
    ),
]


@pytest.mark.parametrize(("raw", "expected"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_definitions_report_their_exact_errors(
    raw: bytes, expected: list[tuple[str, int, int]]
) -> None:
    definition, report = validate_definition(raw, max_bytes=MAX)
    assert definition is None
    assert not report.ok
    assert [(i.code, i.line, i.column) for i in report.errors] == expected
    # Every issue can be shown to a person and serialised for the API.
    for issue in report.issues:
        assert issue.message and json.dumps(issue.to_json())


def test_too_large_is_checked_against_the_limit_given() -> None:
    raw = b"x" * 101
    assert errors(raw, max_bytes=100) == [("too_large", 1, 1)]
    assert errors(raw, max_bytes=101) == []


def test_messages_never_echo_much_of_the_file() -> None:
    secret = "s" * 500
    _, report = validate_definition(f"---\n{secret}: 1\n---\nHi\n".encode(), max_bytes=MAX)
    assert report.errors[0].code == "unknown_key"
    assert secret not in report.errors[0].message


def test_a_pasted_binary_yields_a_bounded_report() -> None:
    _, report = validate_definition(b"\x01" * 10_000, max_bytes=MAX)
    assert [i.code for i in report.errors] == ["control_character"] * 20


# --- warnings ------------------------------------------------------------------------------


def test_voice_lint_warnings_do_not_make_the_definition_invalid() -> None:
    raw = (
        b"---\nvoice: amy\nlanguage: de-DE\n---\n"
        b"Prices:\n| item | price |\n|------|-------|\n| tea | 3 |\n"
        b"Say this:\n```\nprint('hi')\n```\n"
    )
    definition, report = validate_definition(raw, max_bytes=MAX)
    assert definition is not None and report.ok
    assert [(i.code, i.line, i.column) for i in report.warnings] == [
        ("voice_language_mismatch", 2, 8),
        ("markdown_table", 6, 1),
        ("code_block", 10, 1),
    ]
    assert all(i.severity == "warning" for i in report.warnings)


def test_polyglot_voices_fit_every_language() -> None:
    for language in LANGUAGES:
        raw = f"---\nvoice: matthew\nlanguage: {language}\n---\nHi\n".encode()
        assert issues(raw) == []


def test_a_long_prompt_is_a_warning() -> None:
    long_prompt = ("Be kind. " * (PROMPT_LONG_CHARS // 9 + 2)).encode()
    assert issues(long_prompt) == [("warning", "prompt_too_long", 1, 1)]
    assert issues(b"---\nvoice: amy\n---\n" + long_prompt) == [("warning", "prompt_too_long", 4, 1)]


def test_report_json_shape() -> None:
    _, report = validate_definition(b"---\nvoice: bob\n---\n| a |\n|---|---|\n", max_bytes=MAX)
    assert report.to_json() == {
        "ok": False,
        "errors": 1,
        "warnings": 1,
        "issues": [
            {
                "severity": "error",
                "code": "invalid_value",
                "message": report.errors[0].message,
                "line": 2,
                "column": 8,
            },
            {
                "severity": "warning",
                "code": "markdown_table",
                "message": report.warnings[0].message,
                "line": 4,
                "column": 1,
            },
        ],
    }


# --- round trip ------------------------------------------------------------------------------

_unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
_text = st.text(
    alphabet=st.characters(
        codec="utf-8", exclude_categories=("Cc", "Cs"), exclude_characters="{}%"
    ),
    min_size=1,
    max_size=40,
).filter(lambda s: s.strip() != "")
_prompt = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"), exclude_characters="{}")
    | st.sampled_from("\n\t"),
    min_size=1,
    max_size=200,
).filter(lambda s: s.strip() != "")
_tool = st.one_of(
    st.builds(
        ToolSpec,
        name=st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,10}", fullmatch=True),
        description=_text,
        kind=st.just("hang_up"),
    ),
    st.builds(
        ToolSpec,
        name=st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,10}", fullmatch=True),
        description=_text,
        kind=st.just("transfer"),
        target=st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True),
    ),
    st.builds(
        ToolSpec,
        name=st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,10}", fullmatch=True),
        description=_text,
        kind=st.just("webhook"),
        url=st.from_regex(r"https://[a-z]{1,10}\.example/[a-z0-9/]{0,10}", fullmatch=True),
        secret_env=st.from_regex(r"[A-Z_][A-Z0-9_]{0,20}", fullmatch=True),
        timeout=st.one_of(st.none(), st.floats(min_value=0.1, max_value=30.0)),
    ),
)
definitions = st.builds(
    AssistantDefinition,
    # Some prompts start with what looks like a front-matter fence or a byte-order mark.
    prompt=st.one_of(_prompt, _prompt.map(lambda p: "---\n" + p), _prompt.map("\ufeff".__add__)),
    voice=st.one_of(st.none(), st.sampled_from(sorted(VOICES))),
    endpointing=st.one_of(st.none(), st.sampled_from(["HIGH", "MEDIUM", "LOW"])),
    temperature=st.one_of(st.none(), _unit),
    top_p=st.one_of(st.none(), _unit),
    max_tokens=st.one_of(st.none(), st.integers(min_value=1, max_value=10000)),
    language=st.one_of(st.none(), st.sampled_from(sorted(LANGUAGES))),
    greeting=st.one_of(st.none(), _text),
    tools=st.lists(_tool, max_size=3, unique_by=lambda t: t.name).map(tuple),
    fallback_audio=st.one_of(st.none(), st.from_regex(CLIP_NAME_RE, fullmatch=True)),
)


def test_fallback_audio_names_a_clip_and_transfer_target_comes_from_the_tools() -> None:
    raw = (
        b"---\nfallback_audio: please-hold_2\ntools:\n  - name: human\n    description: d\n"
        b"    kind: transfer\n    target: '+15551234567'\n---\nHi\n"
    )
    d = parse(raw)
    assert d.fallback_audio == "please-hold_2"
    assert d.transfer_target() == "+15551234567"
    assert parse(b"Hi\n").transfer_target() is None
    assert parse(b"Hi\n").fallback_audio is None


def test_a_prompt_that_looks_like_front_matter_is_fenced() -> None:
    tricky = AssistantDefinition(prompt="---\nnot: settings\n---\nreal prompt\n")
    text = render_definition(tricky)
    assert text.startswith("---\n---\n")
    assert parse(text.encode()) == tricky
    bom = AssistantDefinition(prompt="\ufeffHi")
    assert parse(render_definition(bom).encode()) == bom


@settings(max_examples=100, deadline=None)
@given(definitions)
def test_front_matter_round_trips(definition: AssistantDefinition) -> None:
    text = render_definition(definition)
    parsed, report = validate_definition(text.encode("utf-8"), max_bytes=10 * MAX)
    assert report.ok, (text, report.to_json())
    assert parsed == definition
    assert parsed.prompt == definition.prompt  # eq ignores nothing, but be explicit


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_validator(raw: bytes) -> None:
    definition, report = validate_definition(raw, max_bytes=200)
    assert (definition is None) == (not report.ok)
    for issue in report.issues:
        assert issue.line >= 1 and issue.column >= 1
