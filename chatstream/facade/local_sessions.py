"""`LocalSessionData`: what handlers written for the original keep in the session dict beyond the
role and the generation overrides (their ChatPrompt, say), by session id, in this process only,
as fastsession's `MemoryStore` kept it. One per `StoreHandle`, so two ChatStreams never share it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any


class LocalSessionData:
    """The session-dict entries beyond the role and the overrides, by session id, in this process
    (live objects, never serialized); the least recently used go first beyond `max_sessions`."""

    def __init__(self, max_sessions: int = 10_000) -> None:
        self.max_sessions = max_sessions
        self._data: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def get(self, session_id: str) -> dict[str, Any]:
        entries = self._data.get(session_id)
        if entries is None:
            return {}
        self._data.move_to_end(session_id)
        return entries

    def keep(self, session_id: str, entries: dict[str, Any]) -> None:
        if not entries:
            self._data.pop(session_id, None)
            return
        self._data[session_id] = entries
        self._data.move_to_end(session_id)
        while len(self._data) > self.max_sessions:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)
