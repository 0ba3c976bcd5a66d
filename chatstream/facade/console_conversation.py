"""The console's conversation (`ChatStream.handle_console_input`), kept in the conversation store.

The console has no HTTP session: it makes one session in the store the first time and keeps one
current conversation there, so its turns continue from stored token ids like any other
conversation. `view` is the conversation as a ChatPrompt (the original's `console_chat_prompt`):
one object for the conversation's life, which the generator writes the reply into and which is
brought up to date from the store after every turn. What a caller changes on it counts at the
next turn: a system text (`/system`) becomes the conversation's system text, and a history
edited or seeded by hand (`add_requester_msg` / `add_responder_msg`) becomes the stored
conversation (a new one, imported, since the stored ids no longer describe it). `clear()` starts a
new conversation at the next turn; the old one stays in the store.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from chatstream.chat_prompt.role_type import RoleType
from chatstream.conversations.export_format import FORMAT, VERSION
from chatstream.facade.conversation_prompt import chat_prompt_of

if TYPE_CHECKING:
    from chatstream.chat_prompt.abstract_chat_prompt import AbstractChatPrompt
    from chatstream.conversations import ConversationStore
    from chatstream.facade.chat_output import ReplyChunk
    from chatstream.facade.conversation_turns import ConversationTurns
    from chatstream.facade.store_handle import StoreHandle

Snapshot = list[tuple[str, Any]]


def _snapshot(chat_prompt: AbstractChatPrompt) -> Snapshot:
    return [(c.get_role_type().name, c.get_message()) for c in chat_prompt.chat_contents]


class ConsoleConversation:
    def __init__(self, stores: StoreHandle, turns: Callable[[], ConversationTurns],
                 create_chat_prompt: Callable[[], AbstractChatPrompt]) -> None:
        self.stores = stores
        self._turns = turns  # a ChatStream built without a model has its turns once it is configured
        self.create_chat_prompt = create_chat_prompt
        self.view: AbstractChatPrompt | None = None
        self._stored: Snapshot = []  # the view's history as the store has it
        self.session_id: str | None = None
        self.conversation_id: str | None = None

    def chat_prompt(self) -> AbstractChatPrompt:
        if self.view is None:
            self.view = self.create_chat_prompt()
            self._stored = _snapshot(self.view)
        return self.view

    def clear(self) -> None:
        self.view = None
        self.conversation_id = None

    async def reply(self, user_input: str) -> AsyncIterator[ReplyChunk]:
        store = await self.stores.get()
        conversation_id = await self._conversation(store)
        assert self.session_id is not None
        view = self.chat_prompt()
        turns = self._turns()
        turn = await turns.open(store, self.session_id, conversation_id, user_input, into=view)
        try:
            async for chunk in turns.stream(turn, {"output_type": None}):
                yield chunk
        finally:
            stored = await turn.closed
            if stored is not None and self.view is view:
                chat_prompt_of(stored, self.create_chat_prompt, into=view)
                self._stored = _snapshot(view)

    async def _conversation(self, store: ConversationStore) -> str:
        """The current conversation, made if needed, with the view's system text and history."""
        if self.session_id is None or await store.get_session(self.session_id) is None:
            self.session_id = (await store.create_session()).id
            self.conversation_id = None
        wanted = self._wanted_system()
        if self.view is not None and _snapshot(self.view) != self._stored:
            self.conversation_id = (await store.import_conversation(self.session_id, self._export(wanted))).id
            return self.conversation_id
        if self.conversation_id is not None:
            conversation = await store.get_conversation(self.session_id, self.conversation_id, include_tokens=False)
            if conversation is None:
                self.conversation_id = None
            elif conversation.system != wanted:
                await store.update_conversation(self.session_id, self.conversation_id, system=wanted)
        if self.conversation_id is None:
            self.conversation_id = (await store.create_conversation(self.session_id, system=wanted)).id
        return self.conversation_id

    def _wanted_system(self) -> str:
        """The view's system text, or "" (the preset's own) when it is the preset's default."""
        if self.view is None:
            return ""
        system = self.view.get_system()
        return "" if system == self.create_chat_prompt().get_system() else system

    def _export(self, system: str) -> dict[str, Any]:
        """The view's history (after the preset's initial turns) in the export format."""
        assert self.view is not None
        now = time.time()
        initial = len(self.create_chat_prompt().chat_contents)
        messages = []
        for content in self.view.chat_contents[initial:]:
            role = "user" if content.get_role_type() == RoleType.REQUESTER else "assistant"
            messages.append({"id": str(uuid.uuid4()), "role": role, "text": content.get_message() or "",
                             "created_at": now})
        return {"format": FORMAT, "version": VERSION, "system": system, "created_at": now, "updated_at": now,
                "messages": messages}
