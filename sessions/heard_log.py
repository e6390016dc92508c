"""What the caller heard of each assistant turn, written to the opt-in call log.

One per call, shared by its two halves like :class:`~sessions.metrics.CallMetrics` (each
half only records; neither reads the other through it):

- the conversation says what each turn *said*: the assistant text Nova Sonic sent with it
  (the FINAL transcript when one comes, else the SPECULATIVE preview that precedes the
  audio: on a barge-in Nova Sonic may send no FINAL text at all) and how much audio it
  generated;
- the carrier link says how it *played* (:class:`~sessions.playback_turns.TurnPlayed`:
  heard to the end, confirmed by a mark or estimated, or cut by a barge-in and where).

Once both are known, one line goes to the call log (role ``assistant``)::

    {"role": "assistant", "turn": 3, "text": "...", "heard": "part", "heard_ms": 1240,
     "total_ms": 3100, "heard_text": "...", "measured": "estimate", "text_stage": "final"}

``heard`` is ``all``, ``part`` or ``none``. ``heard_text`` (only for ``part``) is the start
of the text in proportion to the audio heard, cut back to a word boundary: an
*approximation* (speech rate is not constant, and the preview may say more than the audio
that was generated before the interruption). ``total_ms`` is the audio the model generated
for the turn (or, when more was sent than counted, what was sent).

With the call log off no text is kept: only the results the fallback waits for
(:meth:`sessions.carrier_link.CarrierLink.wait_played`).
"""

from __future__ import annotations

import math
from typing import Literal

import attrs

from sessions.logs import CallLog
from sessions.playback_turns import TurnPlayed

TextStage = Literal["final", "speculative", "clip"]


@attrs.define(eq=False)
class _TurnText:
    final: list[str] = attrs.field(factory=list)
    preview: list[str] = attrs.field(factory=list)
    generated_s: float = 0.0
    interrupted: bool = False
    played: TurnPlayed | None = None
    clip: str | None = None


class HeardLog:
    """Joins each assistant turn's text with how it played (see the module docstring)."""

    def __init__(self, call_log: CallLog) -> None:
        self._log = call_log
        self.enabled = call_log.enabled
        """Whether turn texts are kept (the call log is on)."""
        self._turns: dict[int, _TurnText] = {}
        self._preview: list[str] = []
        self._latest = 0
        self._played: dict[int, TurnPlayed] = {}
        self._written: set[int] = set()

    # --- what the conversation says -------------------------------------------------------

    def preview(self, text: str) -> None:
        """SPECULATIVE assistant text: what the next turn is about to say."""
        if self.enabled:
            self._preview.append(text)

    def turn_started(self, turn: int) -> None:
        """Turn ``turn``'s audio begins; earlier turns with a result are written now."""
        if not self.enabled:
            return
        entry = self._entry(turn)
        entry.preview, self._preview = self._preview, []
        self._latest = max(self._latest, turn)
        for number in [n for n in self._turns if n < turn]:
            self._write_if_played(number, final_or_not=True)

    def generated(self, turn: int, seconds: float) -> None:
        """The model generated ``seconds`` more audio for ``turn``."""
        if self.enabled and turn > 0:
            self._entry(turn).generated_s += seconds

    def final_text(self, turn: int, text: str) -> None:
        """The FINAL transcript of what ``turn`` said."""
        if not self.enabled or turn <= 0:
            return
        if turn in self._written:
            # Its line is out already (a barge-in does not wait for the FINAL text): keep
            # the text anyway, on a line of its own.
            self._log.write_nowait("assistant", text, turn=turn, text_stage="final", late=True)
            return
        self._entry(turn).final.append(text)
        self._write_if_played(turn, final_or_not=False)

    def interrupted(self, turn: int) -> None:
        """A barge-in cut ``turn`` off: its line need not wait for a FINAL text."""
        if self.enabled and turn > 0:
            self._entry(turn).interrupted = True
            self._write_if_played(turn, final_or_not=False)

    def clip(self, turn: int, name: str, text: str | None, seconds: float) -> None:
        """The fallback clip ``name`` (saying ``text``, when known) plays as ``turn``."""
        if not self.enabled:
            return
        entry = self._entry(turn)
        entry.clip, entry.generated_s = name, seconds
        if text:
            entry.final.append(text)

    # --- what the carrier link says -------------------------------------------------------

    def played(self, result: TurnPlayed) -> None:
        """How ``result.turn`` played."""
        self._played[result.turn] = result
        if self.enabled and result.turn in self._turns:
            self._write_if_played(result.turn, final_or_not=False)

    def result(self, turn: int) -> TurnPlayed | None:
        """How ``turn`` played, if known."""
        return self._played.get(turn)

    # --- the end of the call --------------------------------------------------------------

    def flush(self) -> None:
        """Write every turn still waiting (the call is ending); synchronous, so it runs
        under cancellation."""
        for number in sorted(self._turns):
            self._write(number)

    # --- lines ------------------------------------------------------------------------------

    def _entry(self, turn: int) -> _TurnText:
        entry = self._turns.get(turn)
        if entry is None:
            entry = self._turns[turn] = _TurnText()
        return entry

    def _write_if_played(self, turn: int, *, final_or_not: bool) -> None:
        entry = self._turns.get(turn)
        if entry is None:
            return
        played = self._played.get(turn)
        if played is None:
            return
        # A complete turn waits for its FINAL text, which Nova Sonic sends after the audio;
        # a cut one does not (there may be none), nor does one a later turn has followed.
        done = entry.final or entry.interrupted or entry.clip is not None
        if done or not played.complete or final_or_not:
            self._write(turn)

    def _write(self, turn: int) -> None:
        entry = self._turns.pop(turn, None)
        if entry is None:
            return
        self._written.add(turn)
        played = self._played.get(turn)
        stage: TextStage = "final" if entry.final else "speculative"
        text = " ".join(entry.final or entry.preview)
        fields: dict[str, object] = {"turn": turn, "text_stage": stage}
        if entry.clip is not None:
            fields.update(text_stage="clip", clip=entry.clip)
        if played is None:
            fields.update(heard="unknown")
        else:
            total = max(entry.generated_s, played.sent_s)
            heard = min(played.heard_s, total)
            how = "all" if played.complete else ("part" if heard > 0 else "none")
            fields.update(
                heard=how,
                heard_ms=round(heard * 1000),
                total_ms=round(total * 1000),
                measured=played.measured,
            )
            if how == "part":
                fields["heard_text"] = heard_prefix(text, heard / total if total else 0.0)
        self._log.write_nowait("assistant", text, **fields)


def heard_prefix(text: str, fraction: float) -> str:
    """The start of ``text`` in proportion ``fraction`` (0 to 1), cut back to the end of a
    word: where the caller stopped hearing it, approximately."""
    if fraction <= 0 or not text:
        return ""
    if fraction >= 1:
        return text
    cut = math.floor(len(text) * fraction)
    if cut < len(text) and not text[cut].isspace():
        space = text.rfind(" ", 0, cut)
        cut = space if space >= 0 else 0
    return text[:cut].rstrip()
