"""The conversation store: sessions and their conversations, kept in memory, SQLite or Redis.

    store = await open_store("sqlite:///chats.sqlite3", StoreOptions(conversation_ttl_s=days(30)))
    session = await store.create_session()
    conversation = await store.create_conversation(session.id)
    conversation = await store.begin_turn(session.id, conversation.id, "Hello")
    reply = conversation.open_reply
    await store.update_reply(session.id, conversation.id, reply.id, "Hi")
    await store.finish_reply(session.id, conversation.id, reply.id, text="Hi!", finish_reason="stop")

See `store.py` for the interface and docs/conversation-store.md for backends and durability.
"""

from chatstream.conversations.errors import (
    Conflict,
    ConversationNotFound,
    InvalidCursor,
    InvalidId,
    MessageNotFound,
    NotFound,
    NothingToRegenerate,
    Problem,
    ReplyClosed,
    SessionNotFound,
    StoreConfigError,
    StoreError,
    StoreUnavailable,
    TurnInProgress,
    ValidationFailed,
)
from chatstream.conversations.factory import StoreUrl, open_store, parse_store_url, redacted
from chatstream.conversations.models import (
    Conversation,
    ConversationPage,
    ConversationSummary,
    Feedback,
    Message,
    MessageStatus,
    ReplyStats,
    Role,
    Session,
    StoreSize,
    TurnTokens,
)
from chatstream.conversations.options import StoreOptions, days, default_store_path, default_store_url
from chatstream.conversations.store import UNSET, ConversationStore

__all__ = [
    "UNSET", "Conflict", "Conversation", "ConversationNotFound", "ConversationPage", "ConversationStore",
    "ConversationSummary", "Feedback", "InvalidCursor", "InvalidId", "Message", "MessageNotFound", "MessageStatus",
    "NotFound", "NothingToRegenerate", "Problem", "ReplyClosed", "ReplyStats", "Role", "Session", "SessionNotFound",
    "StoreConfigError", "StoreError", "StoreOptions", "StoreSize", "StoreUnavailable", "StoreUrl", "TurnInProgress",
    "TurnTokens", "ValidationFailed", "days", "default_store_path", "default_store_url", "open_store",
    "parse_store_url", "redacted",
]
