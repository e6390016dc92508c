"""The ``dtmf:`` policy of an assistant definition, and the sans-IO keypad collector."""

from __future__ import annotations

import pytest

from actors.assistant_definition import render_definition, validate_definition
from actors.keypad import DEFAULT_POLICY, DtmfCollector, DtmfPolicy, keypad_text, masked

MAX = 64 * 1024


def errors(raw: bytes) -> list[tuple[str, int, int]]:
    _, report = validate_definition(raw, max_bytes=MAX)
    return [(i.code, i.line, i.column) for i in report.issues if i.severity == "error"]


def test_a_full_policy_is_read_and_round_trips() -> None:
    raw = (
        b"---\ndtmf:\n  terminator: '*'\n  inter_digit_timeout_ms: 3000\n  max_digits: 4\n"
        b"---\nPrompt.\n"
    )
    definition, report = validate_definition(raw, max_bytes=MAX)
    assert definition is not None, report.to_json()
    assert definition.dtmf == DtmfPolicy(terminator="*", inter_digit_timeout_ms=3000, max_digits=4)
    again, _ = validate_definition(render_definition(definition).encode(), max_bytes=MAX)
    assert again == definition


def test_missing_keys_take_the_defaults_and_no_key_means_no_policy() -> None:
    definition, _ = validate_definition(b"---\ndtmf:\n  max_digits: 6\n---\nP\n", max_bytes=MAX)
    assert definition is not None
    assert definition.dtmf == DtmfPolicy(max_digits=6)
    plain, _ = validate_definition(b"P\n", max_bytes=MAX)
    assert plain is not None and plain.dtmf is None


def test_an_empty_terminator_means_none() -> None:
    definition, _ = validate_definition(b'---\ndtmf:\n  terminator: ""\n---\nP\n', max_bytes=MAX)
    assert definition is not None and definition.dtmf == DtmfPolicy(terminator="")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"dtmf: 5\n", [("invalid_type", 2, 7)]),
        (b"dtmf:\n  pin: 1\n", [("unknown_key", 3, 3)]),
        (b"dtmf:\n  terminator: '0'\n", [("invalid_value", 3, 15)]),
        (b"dtmf:\n  max_digits: 0\n", [("out_of_range", 3, 15)]),
        (b"dtmf:\n  max_digits: 65\n", [("out_of_range", 3, 15)]),
        (b"dtmf:\n  max_digits: true\n", [("invalid_type", 3, 15)]),
        (b"dtmf:\n  inter_digit_timeout_ms: 100\n", [("out_of_range", 3, 27)]),
        (b"dtmf:\n  inter_digit_timeout_ms: 2.5\n", [("invalid_type", 3, 27)]),
    ],
)
def test_bad_policies_are_errors_with_positions(
    body: bytes, expected: list[tuple[str, int, int]]
) -> None:
    assert errors(b"---\n" + body + b"---\nPrompt.\n") == expected


def test_terminator_ends_an_entry_at_once() -> None:
    c = DtmfCollector(DEFAULT_POLICY)
    assert c.press("1", 0.0) == [] and c.deadline == 2.0
    assert c.press("2", 1.0) == [] and c.deadline == 3.0
    [entry] = c.press("#", 1.5)
    assert (entry.keys, entry.ended_by, entry.digits) == ("12#", "terminator", 2)
    assert c.deadline is None


def test_the_pause_ends_an_entry_only_once_the_deadline_passes() -> None:
    c = DtmfCollector(DtmfPolicy(inter_digit_timeout_ms=500))
    c.press("4", 10.0)
    assert c.expire(10.4) is None
    entry = c.expire(10.5)
    assert entry is not None and (entry.keys, entry.ended_by) == ("4", "timeout")
    assert c.expire(20.0) is None


def test_max_digits_ends_an_entry() -> None:
    c = DtmfCollector(DtmfPolicy(max_digits=3, terminator=""))
    assert c.press("1", 0) == [] and c.press("#", 0) == []  # no terminator: '#' is a key
    [entry] = c.press("3", 0)
    assert (entry.keys, entry.ended_by) == ("1#3", "max_digits")


def test_a_late_key_finishes_the_expired_entry_first() -> None:
    c = DtmfCollector(DEFAULT_POLICY)
    c.press("7", 0.0)
    done = c.press("8", 5.0)
    assert [(e.keys, e.ended_by) for e in done] == [("7", "timeout")]
    assert c.deadline == 7.0


def test_non_keys_are_ignored() -> None:
    c = DtmfCollector(DEFAULT_POLICY)
    assert c.press("x", 0.0) == [] and c.deadline is None


def test_texts_for_the_model_and_the_call_log() -> None:
    c = DtmfCollector(DEFAULT_POLICY)
    for key in "41*9":
        c.press(key, 0.0)
    [entry] = c.press("#", 0.0)
    assert keypad_text(entry) == "[The caller entered on the phone keypad: 41*9#]"
    assert keypad_text(entry, mask=True) == "[The caller entered on the phone keypad: xxxx#]"
    assert masked("12AB*#") == "xxxxx#"
    assert "41" not in repr(entry)  # the keys stay out of reprs (and so out of tracebacks)
