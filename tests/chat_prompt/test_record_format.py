"""`AbstractChatPrompt.to_dict` / `from_dict` read and write the original ChatStream 0.3.0's record format.

Records move between versions in persisted stores (a custom request handler keeps `to_dict()` in a database), so
both directions matter. `golden/original_0_3_0_record.json` was written by the original 0.3.0's `to_dict` for the
history `build_history` makes here (system text, two exchanges with message ids, a child message, an open reply);
the original's own `from_dict` reads that file back. So:

- ours reads it into the same history (original -> ours);
- ours writes exactly that record for the same history (ours -> original: whatever the original wrote, it reads).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chatstream.chat_prompt import AbstractChatPrompt, ChatContent, PromptTTL, RoleType

GOLDEN = Path(__file__).parent / "golden" / "original_0_3_0_record.json"


class LinePrompt(AbstractChatPrompt):
    def __init__(self) -> None:
        super().__init__()
        self.set_requester("<human>")
        self.set_responder("<bot>")

    def create_prompt(self, opts: dict[str, Any] | None = None) -> str:
        lines = [self.system] + [f"{c.get_role()}: {c.get_message() or ''}" for c in self.get_contents(opts)]
        return "\n".join(lines)


def build_history() -> LinePrompt:
    prompt = LinePrompt()
    prompt.set_system("You are a careful assistant. 日本語も話せます。")
    prompt.add_requester_msg("Q1 line1\nline2")
    prompt.add_responder_msg("A1")
    prompt.set_responder_last_msg_id("msg-1")
    prompt.add_requester_msg("Translate this", child_message="こんにちは")
    prompt.add_responder_msg("Hello")
    prompt.set_responder_last_msg_id("msg-2")
    prompt.add_requester_msg("Q3")
    prompt.add_responder_msg(None)
    return prompt


def golden() -> dict[str, Any]:
    return json.loads(GOLDEN.read_text(encoding="utf-8"))


def test_ours_writes_the_original_record() -> None:
    assert build_history().to_dict() == golden()


def test_ours_reads_the_original_record() -> None:
    restored = LinePrompt.from_dict(golden())
    expected = build_history()
    assert restored.chat_contents == expected.chat_contents
    assert restored.get_system() == expected.get_system()
    assert restored.create_prompt() == expected.create_prompt()
    # the history objects behave as the original's: ChatContent with their accessors
    assert restored.requester_messages[-1].get_message() == "Q3"
    assert restored.requester_messages[1].get_child_messages() == ["こんにちは"]
    assert restored.responder_messages[0].get_message_id() == "msg-1"
    assert restored.responder_messages[-1].get_message() is None
    assert restored.get_turn() == 3
    assert restored.to_dict() == golden()


def test_a_restored_record_goes_on_like_the_original() -> None:
    restored = LinePrompt.from_dict(golden())
    restored.set_responder_last_msg("A3")
    restored.set_responder_last_msg_id("msg-3")
    assert restored.find_chat_content_by_message_id("msg-3").get_message() == "A3"
    restored.add_requester_msg("Q4")
    data = restored.to_dict()
    assert [d["message"] for d in data["requester_messages"]] == ["Q1 line1\nline2", "Translate this", "Q3", "Q4"]
    assert data["responder_messages"][-1] == {"role": "<bot>", "role_type": "RESPONDER", "message": "A3",
                                              "message_id": "msg-3", "child_messages": None}


def test_records_this_package_wrote_before_still_load() -> None:
    # Earlier versions of this package wrote the per-side lists as plain strings; chat_contents holds everything.
    old = golden()
    old["requester_messages"] = ["Q1 line1\nline2", "Translate this", "Q3"]
    old["responder_messages"] = ["A1", "Hello", None]
    for record in old["chat_contents"]:
        record["child_messages"] = record["child_messages"] or []
    assert LinePrompt.from_dict(old).chat_contents == build_history().chat_contents


def test_enum_values_are_the_originals() -> None:
    assert [t.value for t in RoleType] == [1, 2, 3]
    assert [t.value for t in PromptTTL] == [1, 2]
    assert ChatContent("x", "y", role_type=RoleType.RESPONDER).to_dict()["role_type"] == "RESPONDER"
