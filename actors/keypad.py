"""Keypad digits (DTMF): the per-assistant collection policy, its checks, and the collector.

Nova Sonic does not decode DTMF tones: the carrier reports each key and the daemon sends the
entry to the model as cross-modal text (nova2-userguide ``sonic-cross-modal``, reference
nova-sonic.md §10). How keys become one entry is the assistant's ``dtmf:`` policy::

    dtmf:
      terminator: "#"              # "#", "*" or "" (none); ends the entry at once
      inter_digit_timeout_ms: 2000 # a pause this long ends the entry (500 to 10000)
      max_digits: 16               # the entry ends once it holds this many keys (1 to 64)

Every key is optional (the defaults above, :data:`DEFAULT_POLICY`); an unknown key or a bad
value is an error, as everywhere in the definition. :class:`DtmfCollector` is sans-IO: keys
and the current time go in, a finished :class:`KeypadEntry` comes out on the terminator, at
``max_digits`` or once :attr:`DtmfCollector.deadline` has passed.

Digits are card numbers and PINs: they go to the model, never to the service log (which
sees only counts), and the opt-in call log keeps them masked (:func:`masked`).
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal

import attrs
import yaml

from actors.definition_issues import IssueCollector, shorten, type_name, yaml_position

__all__ = [
    "DEFAULT_POLICY",
    "DTMF_KEYS",
    "DtmfCollector",
    "DtmfPolicy",
    "KeypadEntry",
    "check_dtmf",
    "keypad_text",
    "masked",
]

DTMF_KEYS: Final = frozenset("0123456789*#ABCD")
"""The sixteen DTMF keys (A-D exist on some handsets and carriers)."""
TERMINATORS: Final = ("#", "*", "")
TIMEOUT_MS_RANGE: Final = (500, 10000)
MAX_DIGITS_RANGE: Final = (1, 64)
_KEYS: Final = ("terminator", "inter_digit_timeout_ms", "max_digits")
_MASKED_KEY: Final = re.compile(r"[0-9A-D*]")

EndedBy = Literal["terminator", "max_digits", "timeout"]


@attrs.frozen(kw_only=True)
class DtmfPolicy:
    """How one assistant collects keys into an entry (see the module docstring)."""

    terminator: str = "#"
    inter_digit_timeout_ms: int = 2000
    max_digits: int = 16

    def to_json(self) -> dict[str, object]:
        """The policy as written in front matter."""
        return {
            "terminator": self.terminator,
            "inter_digit_timeout_ms": self.inter_digit_timeout_ms,
            "max_digits": self.max_digits,
        }


DEFAULT_POLICY: Final = DtmfPolicy()


@attrs.frozen(kw_only=True)
class KeypadEntry:
    """One finished entry: the keys pressed (the terminator, if pressed, last) and why it
    ended."""

    keys: str = attrs.field(repr=False)
    ended_by: EndedBy

    @property
    def digits(self) -> int:
        """How many keys the entry holds, terminator excluded (what the service log sees)."""
        return len(self.keys) - (self.ended_by == "terminator")


def keypad_text(entry: KeypadEntry, *, mask: bool = False) -> str:
    """The cross-modal text that tells the model what the caller entered.

    AWS's guidance is to send the keys as text (its example is "1234"); the bracketed
    sentence says where they came from, so the model does not take them for speech.
    ``mask`` gives the same sentence with the keys masked (:func:`masked`), for the call log.
    """
    keys = masked(entry.keys) if mask else entry.keys
    return f"[The caller entered on the phone keypad: {keys}]"


def masked(keys: str) -> str:
    """``keys`` with every key but ``#`` replaced by ``x`` (for the opt-in call log)."""
    return _MASKED_KEY.sub("x", keys)


class DtmfCollector:
    """Collects keys into entries under a :class:`DtmfPolicy`; time is passed in (seconds)."""

    def __init__(self, policy: DtmfPolicy) -> None:
        self._policy = policy
        self._timeout = policy.inter_digit_timeout_ms / 1000
        self._keys: list[str] = []
        self._deadline: float | None = None

    @property
    def deadline(self) -> float | None:
        """When the entry in progress ends for the pause (``None``: no entry in progress)."""
        return self._deadline

    def press(self, key: str, now: float) -> list[KeypadEntry]:
        """Add one key pressed at ``now``; return the entries that finishes (none, or one;
        two when the previous entry's pause had already run out and nobody expired it).

        A key that is not a DTMF key is ignored (the dialects only report real ones).
        """
        if key not in DTMF_KEYS:
            return []
        done: list[KeypadEntry] = []
        late = self.expire(now)
        if late is not None:
            done.append(late)
        self._keys.append(key)
        if key == self._policy.terminator and self._policy.terminator:
            done.append(self._finish("terminator"))
        elif len(self._keys) >= self._policy.max_digits:
            done.append(self._finish("max_digits"))
        else:
            self._deadline = now + self._timeout
        return done

    def expire(self, now: float) -> KeypadEntry | None:
        """The entry in progress if its pause has run out at ``now``, else ``None``."""
        if self._deadline is None or now < self._deadline:
            return None
        return self._finish("timeout")

    def _finish(self, ended_by: EndedBy) -> KeypadEntry:
        entry = KeypadEntry(keys="".join(self._keys), ended_by=ended_by)
        self._keys.clear()
        self._deadline = None
        return entry


def check_dtmf(
    value: Any, node: yaml.Node, out: IssueCollector, first_line: int
) -> DtmfPolicy | None:
    """Check the ``dtmf:`` front-matter mapping; report each problem with its position."""
    at = yaml_position(node.start_mark, first_line)
    if not isinstance(value, dict) or not isinstance(node, yaml.MappingNode):
        out.error("invalid_type", f"dtmf must be a mapping, not {type_name(value)}", *at)
        return None
    errors_before = out.error_count
    positions: dict[str, tuple[int, int]] = {}
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if not isinstance(key, str) or key not in _KEYS:
            out.error(
                "unknown_key",
                f"unknown dtmf key {shorten(key)!r}; known keys: {', '.join(_KEYS)}",
                *yaml_position(key_node.start_mark, first_line),
            )
            continue
        positions[key] = yaml_position(value_node.start_mark, first_line)
    terminator = value.get("terminator", DEFAULT_POLICY.terminator)
    if terminator is None:
        terminator = ""  # "terminator:" with nothing after it: no terminator
    if "terminator" in positions and (
        not isinstance(terminator, str) or terminator not in TERMINATORS
    ):
        out.error(
            "invalid_value",
            'dtmf terminator must be "#", "*" or "" (none)',
            *positions["terminator"],
        )
    numbers: dict[str, int] = {}
    for key, (low, high), default in (
        ("inter_digit_timeout_ms", TIMEOUT_MS_RANGE, DEFAULT_POLICY.inter_digit_timeout_ms),
        ("max_digits", MAX_DIGITS_RANGE, DEFAULT_POLICY.max_digits),
    ):
        number = value.get(key, default)
        numbers[key] = default
        if key not in positions:
            continue
        if isinstance(number, bool) or not isinstance(number, int):
            out.error(
                "invalid_type", f"dtmf {key} must be an integer, not {type_name(number)}",
                *positions[key],
            )  # fmt: skip
        elif not low <= number <= high:
            out.error(
                "out_of_range", f"dtmf {key} {number} is outside {low} to {high}", *positions[key]
            )
        else:
            numbers[key] = number
    if out.error_count > errors_before:
        return None
    return DtmfPolicy(
        terminator=str(terminator),
        inter_digit_timeout_ms=numbers["inter_digit_timeout_ms"],
        max_digits=numbers["max_digits"],
    )
