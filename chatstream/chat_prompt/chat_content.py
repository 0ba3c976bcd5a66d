"""One turn of a chat history.

This module owns `ChatContent`: the role label, the side (`RoleType`), the message text, an optional message ID
(used to address a turn for feedback or to cut the history at it) and the "child messages" attached to a user turn
(extra inputs that instruction-style prompts render as their own section, e.g. "### 入力:").

A message of None means "not written yet": the open turn the model continues from.
"""

from __future__ import annotations

from typing import Any

from chatstream.chat_prompt.role_type import RoleType


class ChatContent:
    """A single turn: who said it and what was said."""

    def __init__(
        self,
        role: str,
        msg: str | None = "",
        msg_id: str | None = None,
        role_type: RoleType = RoleType.UNKNOWN,
        child_msgs: list[str] | None = None,
    ) -> None:
        self.role = role
        self.message = msg
        self.message_id = msg_id
        self.role_type = role_type
        # Copied so that a caller's list can be reused without aliasing the history.
        self.child_messages: list[str] = list(child_msgs) if child_msgs else []

    # -- accessors ----------------------------------------------------------------------------------------------------

    def get_role(self) -> str:
        return self.role

    def get_role_type(self) -> RoleType:
        return self.role_type

    def get_message(self) -> str | None:
        return self.message

    def set_message(self, msg: str | None) -> None:
        self.message = msg

    def get_message_id(self) -> str | None:
        return self.message_id

    def set_message_id(self, msg_id: str | None) -> None:
        self.message_id = msg_id

    def add_child_message(self, msg: str) -> None:
        self.child_messages.append(msg)

    def get_child_messages(self) -> list[str]:
        return self.child_messages

    def has_child_messages(self) -> bool:
        return len(self.child_messages) > 0

    def copy(self) -> ChatContent:
        """A copy that shares nothing mutable with this one."""
        return ChatContent(self.role, self.message, self.message_id, self.role_type, self.child_messages)

    # -- serialisation ------------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form, the original's record: the role type by enum name ("REQUESTER"), and
        `child_messages` null when there are none."""
        return {
            "role": self.role,
            "role_type": self.role_type.name,
            "message": self.message,
            "message_id": self.message_id,
            "child_messages": list(self.child_messages) or None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChatContent:
        """Inverse of `to_dict`. Missing keys take the constructor defaults, so older records (role and message
        only) still load."""
        role_type_name = data.get("role_type") or RoleType.UNKNOWN.name
        try:
            role_type = RoleType[role_type_name]
        except KeyError:
            raise ValueError(f"unknown role_type {role_type_name!r}; expected one of {[t.name for t in RoleType]}")
        return cls(
            role=data.get("role", ""),
            msg=data.get("message", ""),
            msg_id=data.get("message_id"),
            role_type=role_type,
            child_msgs=data.get("child_messages") or None,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ChatContent):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return (
            f"ChatContent(role={self.role!r}, role_type={self.role_type.name}, message={self.message!r}, "
            f"message_id={self.message_id!r}, child_messages={self.child_messages!r})"
        )
