"""ChatContent accessors, child messages and the to_dict/from_dict round trip."""

from __future__ import annotations

import pytest

from chatstream.chat_prompt import ChatContent, RoleType


def test_defaults_and_accessors() -> None:
    content = ChatContent("<human>")
    assert content.get_role() == "<human>"
    assert content.get_message() == ""
    assert content.get_message_id() is None
    assert content.get_role_type() == RoleType.UNKNOWN
    assert content.get_child_messages() == [] and not content.has_child_messages()
    content.set_message("hi")
    content.set_message_id("m1")
    content.add_child_message("extra")
    assert (content.get_message(), content.get_message_id()) == ("hi", "m1")
    assert content.get_child_messages() == ["extra"] and content.has_child_messages()


def test_child_list_is_copied() -> None:
    children = ["a"]
    content = ChatContent("u", "q", child_msgs=children)
    children.append("b")
    assert content.get_child_messages() == ["a"]


def test_to_dict_uses_enum_name_and_round_trips() -> None:
    content = ChatContent("ユーザー", "質問", "id-1", RoleType.REQUESTER, ["入力"])
    data = content.to_dict()
    assert data == {
        "role": "ユーザー",
        "role_type": "REQUESTER",
        "message": "質問",
        "message_id": "id-1",
        "child_messages": ["入力"],
    }
    again = ChatContent.from_dict(data)
    assert again == content and again is not content
    assert again.get_role_type() is RoleType.REQUESTER


def test_from_dict_accepts_minimal_records_and_rejects_unknown_role_type() -> None:
    content = ChatContent.from_dict({"role": "<bot>", "message": None})
    assert content.get_role_type() == RoleType.UNKNOWN and content.get_message() is None
    with pytest.raises(ValueError, match="role_type"):
        ChatContent.from_dict({"role": "x", "role_type": "NOPE"})


def test_copy_shares_nothing_mutable() -> None:
    content = ChatContent("u", "q", "1", RoleType.REQUESTER, ["c"])
    clone = content.copy()
    clone.add_child_message("d")
    clone.set_message(None)
    assert content.get_child_messages() == ["c"] and content.get_message() == "q"
