"""The ordered chat history a prompt is rendered from.

This module owns `ChatHistory`, the history half of `AbstractChatPrompt`: appending and editing turns, the view a
prompt renders (`get_contents`: SINGLE_TURN, omit-last-message, cut-at-message-id) and (de)serialisation of the
history. It knows nothing about how a model formats turns; that is the prompt classes' business.

The per-side lists of the original API (`requester_messages`, `responder_messages`: the `ChatContent`s of each side,
so `requester_messages[-1].get_message()` works as it did) are derived from `chat_contents` rather than kept
alongside it, so the three can never disagree after an edit.
"""

from __future__ import annotations

from typing import Any

from chatstream.chat_prompt.chat_content import ChatContent
from chatstream.chat_prompt.prompt_ttl import PromptTTL
from chatstream.chat_prompt.role_type import RoleType

ReplacementPairs = list[tuple[str, str]]


def apply_replacements(text: str | None, pairs: ReplacementPairs | None) -> str | None:
    """`text` with each (old, new) pair applied in order; None stays None (an open turn)."""
    if text is None:
        return None
    for old, new in pairs or []:
        text = text.replace(old, new)
    return text


class ChatHistory:
    """History state and editing. Mixed into `AbstractChatPrompt`; not useful on its own."""

    requester: str
    responder: str
    prompt_ttl_mode: PromptTTL

    def _init_history(self) -> None:
        self.chat_contents: list[ChatContent] = []

    def get_replacement_when_input(self) -> ReplacementPairs | None:
        """(old, new) pairs applied to user input when it enters the history (rinna: newline -> "<NL>")."""
        return []

    # -- derived views ------------------------------------------------------------------------------------------------

    def _contents_of(self, role_type: RoleType) -> list[ChatContent]:
        return [c for c in self.chat_contents if c.get_role_type() == role_type]

    # The lists are views: a new list of the history's own ChatContent objects on every read (so editing a content
    # edits the history). Assigning them, as the original's `from_dict` did, is accepted and has no effect.
    @property
    def requester_messages(self) -> list[ChatContent]:
        """The user turns, oldest first."""
        return self._contents_of(RoleType.REQUESTER)

    @requester_messages.setter
    def requester_messages(self, _value: object) -> None:
        pass

    @property
    def responder_messages(self) -> list[ChatContent]:
        """The model turns, oldest first."""
        return self._contents_of(RoleType.RESPONDER)

    @responder_messages.setter
    def responder_messages(self, _value: object) -> None:
        pass

    def _last_content_of(self, role_type: RoleType) -> ChatContent | None:
        for content in reversed(self.chat_contents):
            if content.get_role_type() == role_type:
                return content
        return None

    # -- adding turns -------------------------------------------------------------------------------------------------

    def add_requester_msg(
        self,
        message: str | None,
        child_message: str | None = None,
        child_messages: list[str] | None = None,
        message_id: str | None = None,
    ) -> None:
        """Append a user turn. `child_message` (one) or `child_messages` (a non-empty list of str) attach extra
        inputs; passing both is ambiguous and raises ValueError. Input replacements apply to all of them."""
        if child_message is not None and child_messages is not None:
            raise ValueError("pass either child_message or child_messages, not both")
        if child_messages is not None:
            if (
                not isinstance(child_messages, list)
                or not child_messages
                or not all(isinstance(m, str) for m in child_messages)
            ):
                raise ValueError("child_messages must be a non-empty list of str")
        children = [child_message] if child_message is not None else list(child_messages or [])
        pairs = self.get_replacement_when_input()
        content = ChatContent(
            role=self.requester,
            msg=apply_replacements(message, pairs),
            msg_id=message_id,
            role_type=RoleType.REQUESTER,
            child_msgs=[apply_replacements(c, pairs) or "" for c in children],
        )
        self.chat_contents.append(content)

    def add_responder_msg(self, message: str | None, message_id: str | None = None) -> None:
        """Append a model turn; None marks the turn the model is about to write."""
        self.chat_contents.append(
            ChatContent(role=self.responder, msg=message, msg_id=message_id, role_type=RoleType.RESPONDER)
        )

    # -- reading ------------------------------------------------------------------------------------------------------

    def get_requester_last_msg(self) -> str | None:
        content = self._last_content_of(RoleType.REQUESTER)
        return content.get_message() if content else None

    def get_responder_last_msg(self) -> str | None:
        content = self._last_content_of(RoleType.RESPONDER)
        return content.get_message() if content else None

    def find_chat_content_by_message_id(self, message_id: str) -> ChatContent | None:
        for content in self.chat_contents:
            if content.get_message_id() == message_id:
                return content
        return None

    def get_turn(self) -> int:
        """Number of user turns: one question and its answer count as one turn."""
        return len(self._contents_of(RoleType.REQUESTER))

    def is_empty(self) -> bool:
        return not self.chat_contents

    def is_requester_role(self, role: str) -> bool:
        return role == self.requester

    def replace_string(self, text: str | None, pairs: ReplacementPairs | None) -> str | None:
        """`text` with each (old, new) pair applied in order; None stays None."""
        return apply_replacements(text, pairs)

    def get_contents(self, opts: dict[str, Any] | None = None) -> list[ChatContent]:
        """The turns a prompt renders, in order. Prompt classes must iterate this, not `chat_contents`, so that:

        - `"to_message_id": id` stops after the turn with that ID (an unknown ID keeps them all, as in the original);
        - SINGLE_TURN keeps the last exchange: from the last user turn on. (The reference kept the last two
          entries, which picks up the previous answer when the history ends with a user turn.)
        - `"omit_last_message": True` replaces the last turn by a copy whose message is None, i.e. the prompt as it
          was before the reply started streaming.
        - `"skip_exchanges": k` leaves out the k oldest exchanges (everything before the (k+1)-th user turn); the
          generator uses it to fit a long conversation into the context while keeping the system text.

        The history itself is never modified.
        """
        opts = opts or {}
        contents = list(self.chat_contents)
        to_message_id = opts.get("to_message_id")
        if to_message_id is not None:
            for index, content in enumerate(contents):
                if content.get_message_id() == to_message_id:
                    contents = contents[: index + 1]
                    break
        skip = int(opts.get("skip_exchanges") or 0)
        if skip > 0:
            starts = [i for i, c in enumerate(contents) if c.get_role_type() == RoleType.REQUESTER]
            if skip < len(starts):
                contents = contents[starts[skip]:]
        if self.prompt_ttl_mode == PromptTTL.SINGLE_TURN:
            last_requester = max(
                (i for i, c in enumerate(contents) if c.get_role_type() == RoleType.REQUESTER), default=None
            )
            contents = contents[last_requester:] if last_requester is not None else contents[-2:]
        if opts.get("omit_last_message") and contents:
            last = contents[-1].copy()
            last.set_message(None)
            contents[-1] = last
        return contents

    # -- editing ------------------------------------------------------------------------------------------------------

    def set_responder_last_msg(self, message: str | None) -> None:
        """Replace the text of the last model turn (generation calls this as tokens arrive)."""
        content = self._last_content_of(RoleType.RESPONDER)
        if content is None:
            raise ValueError("there is no responder message to update")
        content.set_message(message)

    def set_responder_last_msg_id(self, message_id: str | None) -> None:
        content = self._last_content_of(RoleType.RESPONDER)
        if content is None:
            raise ValueError("there is no responder message to set an ID on")
        content.set_message_id(message_id)

    def clear_last_responder_message(self) -> None:
        """Reopen the last model turn (message None) so it can be generated again; no-op unless the last turn is
        the model's."""
        if self.chat_contents and self.chat_contents[-1].get_role_type() == RoleType.RESPONDER:
            self.chat_contents[-1].set_message(None)

    def _remove_last(self, role_type: RoleType) -> None:
        if not self.chat_contents:
            raise IndexError(f"cannot remove the last {role_type.name.lower()} message: the history is empty")
        last = self.chat_contents[-1]
        if last.get_role_type() != role_type:
            raise ValueError(
                f"the last message is a {last.get_role_type().name.lower()} message, not a "
                f"{role_type.name.lower()} message"
            )
        self.chat_contents.pop()

    def remove_last_requester_msg(self) -> None:
        """Pop the last turn. IndexError on an empty history, ValueError if the last turn is not the user's."""
        self._remove_last(RoleType.REQUESTER)

    def remove_last_responder_msg(self) -> None:
        """Pop the last turn. IndexError on an empty history, ValueError if the last turn is not the model's."""
        self._remove_last(RoleType.RESPONDER)

    def clear_history(self) -> None:
        self.chat_contents = []

    # -- serialisation ------------------------------------------------------------------------------------------------

    def _history_to_dict(self) -> dict[str, Any]:
        return {
            "chat_contents": [c.to_dict() for c in self.chat_contents],
            # Redundant with chat_contents, written because the original's from_dict reads them (as content records).
            "responder_messages": [c.to_dict() for c in self.responder_messages],
            "requester_messages": [c.to_dict() for c in self.requester_messages],
        }

    def _history_from_dict(self, data: dict[str, Any]) -> None:
        # chat_contents is the whole history; the per-side lists (content records in the original's format, plain
        # strings in records this package wrote before it matched that format) are views of it and are not read.
        contents = [ChatContent.from_dict(d) for d in data.get("chat_contents") or []]
        for content in contents:
            # Records without role types: recover the side from the role label where the labels differ.
            if content.get_role_type() == RoleType.UNKNOWN and self.requester != self.responder:
                if content.get_role() == self.requester:
                    content.role_type = RoleType.REQUESTER
                elif content.get_role() == self.responder:
                    content.role_type = RoleType.RESPONDER
        self.chat_contents = contents
