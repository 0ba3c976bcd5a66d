"""Settling a conversation whose replica died mid-reply, so its next turn can run at once.

A replica that dies leaves its reply open in the store, and the store refuses a new turn while
that reply's lease lasts (`TurnInProgress`, 409, up to `reply_lease_s`). The ingress knows more
than the store: it saw the stream break. So it closes the reply as `interrupted` with the text
the store kept (the replica's heartbeat stores the partial text about once a second), and the
client's next turn runs on a live replica from the whole history. Only /chat_stream replies are
stored; /v1 is stateless and needs nothing.
"""

from __future__ import annotations

import logging

from chatstream.conversations import StoreError
from chatstream.facade.conversation_handler import CONVERSATION_ID_HEADER
from chatstream.facade.request_handler import MESSAGE_ID_HEADER
from chatstream.facade.store_handle import StoreHandle
from chatstream.ray.proxy import BrokenStream
from chatstream.ray.route_keys import learned_keys, session_id_of

logger = logging.getLogger("chatstream.ray")


def _session_id(broken: BrokenStream) -> str | None:
    given = session_id_of(broken.request.headers)
    if given is not None:
        return given
    made = [key.removeprefix("session:") for key in learned_keys(broken.start) if key.startswith("session:")]
    return made[0] if made else None


async def settle_broken_reply(stores: StoreHandle, broken: BrokenStream) -> bool:
    """Closes the open reply of a broken /chat_stream as interrupted; True when it did."""
    conversation_id = broken.start.header(CONVERSATION_ID_HEADER)
    reply_id = broken.start.header(MESSAGE_ID_HEADER)
    session_id = _session_id(broken)
    if not (conversation_id and reply_id and session_id):
        return False
    try:
        store = await stores.get()
        conversation = await store.get_conversation(session_id, conversation_id, include_tokens=False)
        if conversation is None:
            return False
        reply = next((m for m in conversation.messages if m.id == reply_id), None)
        if reply is None or reply.status != "streaming":
            return False  # the replica closed it before it went, or it is no longer the open one
        await store.finish_reply(session_id, conversation_id, reply_id, text=reply.text, finish_reason="error",
                                 interrupted=True)
    except StoreError as exc:
        logger.warning("the interrupted reply %s could not be settled (its lease ends it): %s", reply_id, exc)
        return False
    logger.info("replica %s died during reply %s; stored as interrupted", broken.replica, reply_id)
    return True
