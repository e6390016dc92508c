"""What was said in a call, kept so a new Nova Sonic stream can continue the conversation.

Nova Sonic streams end after about 8 minutes (reference nova-sonic.md §4, §4.1); AWS's
guidance is to open a new stream and replay the chat history after the system prompt.
This module is sans-IO: it records final transcripts and produces the history to replay,
shaped by the documented rules (§3.5):

- one TEXT block per message, roles USER and ASSISTANT, the first one USER;
- consecutive messages of the same role merged;
- the whole history at most 40 KB (older messages are dropped first);
- each ``textInput`` at most 1 KB (the caller splits with ``events.split_text``).
"""

from __future__ import annotations

from collections import deque

import attrs

MAX_HISTORY_BYTES = 40 * 1024
ROLES = ("USER", "ASSISTANT")


@attrs.frozen
class Message:
    """One turn of the conversation as the model should remember it."""

    role: str
    """``USER`` or ``ASSISTANT``."""
    text: str


@attrs.define
class ConversationHistory:
    """Final transcripts of a call, bounded in bytes (oldest dropped first)."""

    max_bytes: int = MAX_HISTORY_BYTES
    _messages: deque[Message] = attrs.field(factory=deque)
    _bytes: int = 0

    def add(self, role: str, text: str) -> None:
        """Record one final transcript (``role`` USER or ASSISTANT); others are ignored."""
        text = text.strip()
        if role not in ROLES or not text:
            return
        if self._messages and self._messages[-1].role == role:
            last = self._messages.pop()
            self._bytes -= len(last.text.encode())
            text = f"{last.text} {text}"
        self._messages.append(Message(role, text))
        self._bytes += len(text.encode())
        while self._bytes > self.max_bytes and self._messages:
            dropped = self._messages.popleft()
            self._bytes -= len(dropped.text.encode())

    def __len__(self) -> int:
        return len(self._messages)

    def replay(self) -> list[Message]:
        """The messages to send after the system prompt: alternating, starting with USER.

        A single message longer than the whole budget is cut to its most recent part.
        """
        messages = list(self._messages)
        while messages and messages[0].role != "USER":
            messages.pop(0)
        if messages and len(messages[0].text.encode()) > self.max_bytes:
            tail = messages[0].text.encode()[-self.max_bytes :].decode(errors="ignore")
            messages[0] = Message("USER", tail)
        return messages
