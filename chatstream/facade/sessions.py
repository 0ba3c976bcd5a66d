"""Browser sessions kept in the conversation store, created only where a route needs one.

`SessionCookieMiddleware` (session_cookie.py) puts a `StoreSession` on `request.state.session`;
nothing is read or written until a route asks: `load()` finds the record named by the cookie,
`ensure()` also creates it (and then the response sets the cookie). So /health, /metrics, /v1,
the page and its files never create a session.

A `StoreSession` also speaks the original's session interface (fastsession's `FastSession`):
`get_session()` is a dict holding the client role (`chat_stream_client_role`) and the generation
overrides (`generation_params`), `save_session()` marks it changed; the change is written to the
store before the response starts. Only those two keys go to the store: the conversation itself
lives in the store's conversations, not in the session. Whatever else a handler written for the
original puts in the dict (its ChatPrompt, say) is kept in this process only, as fastsession's
`MemoryStore` kept it (`LocalSessionData`), and makes the session (and its cookie) exist.

`bind_session(request, stores, create)` is what handlers use, whichever middleware made the session:
ours, or a user's own `FastSessionMiddleware` (the original's quick start), whose session id then
names the store's session, while its dict keeps the role and the overrides as before.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from chatstream.conversations import InvalidId, Session, StoreError, StoreUnavailable
from chatstream.conversations.ids import check_session_id, new_session_id
from chatstream.facade.client_roles import SESSION_ROLE_KEY
from chatstream.facade.request_handler import GENERATION_PARAMS_KEY
from chatstream.facade.store_handle import StoreHandle

logger = logging.getLogger("chatstream")
_STORED_KEYS = (SESSION_ROLE_KEY, GENERATION_PARAMS_KEY)


class StoreSession:
    """One request's view of its browser session (see the module docstring)."""

    def __init__(self, stores: StoreHandle, session_id: str | None, cookie_is_old: bool = False) -> None:
        self.stores = stores
        self._id = session_id
        self._from_cookie = session_id is not None
        self._cookie_is_old = cookie_is_old
        self.record: Session | None = None
        self._loaded = False
        self.created = False
        self._data: dict[str, Any] = {}
        self._dirty = False

    # -- the original's session interface ----------------------------------------------------------
    def get_session_id(self) -> str:
        """This session's id (a new one, not stored yet, when the request brought none)."""
        if self._id is None:
            self._id = new_session_id()
        return self._id

    def get_session(self) -> MutableMapping[str, Any]:
        return self._data

    def save_session(self) -> None:
        self._dirty = True

    def clear_session(self) -> None:
        self._data.clear()
        self._dirty = True

    # -- the store ---------------------------------------------------------------------------------
    @property
    def exists(self) -> bool:
        return self.record is not None

    @property
    def cookie_needed(self) -> bool:
        """Whether the response must (re)set the cookie: the session was made now, or the cookie
        that named it is old enough to be renewed."""
        return self.record is not None and (self.created or self._cookie_is_old)

    async def load(self) -> Session | None:
        """The stored session the cookie names (touched), or None; read once per request."""
        if not self._loaded and self._from_cookie:
            store = await self.stores.get()
            self._use(await store.touch_session(self.get_session_id()))
        self._loaded = True
        return self.record

    async def ensure(self) -> Session:
        """The stored session, created now if the request had none (or it expired)."""
        record = await self.load()
        if record is None:
            store = await self.stores.get()
            record = await store.create_session(self.get_session_id())
            self.created = True
            pending = dict(self._data)  # set before the session existed (a role granted just now)
            self._use(record)
            self._data.update(pending)
        return record

    async def flush(self) -> None:
        """Write the role and the generation overrides if they changed (only to a stored session);
        keep the dict's other entries in this process, making the session if there is none yet."""
        extras = {key: value for key, value in self._data.items() if key not in _STORED_KEYS}
        if extras and self.record is None:
            await self.ensure()  # a handler keeps its conversation here: the browser needs its cookie
        if self.record is not None:
            self.stores.local_sessions.keep(self.record.id, extras)
        if not self._dirty or self.record is None:
            return
        self._dirty = False
        role = self._data.get(SESSION_ROLE_KEY)
        params = self._data.get(GENERATION_PARAMS_KEY) or {}
        store = await self.stores.get()
        self._use(await store.update_session(
            self.record.id, client_role=role if isinstance(role, str) else None,
            generation_params=dict(params) if isinstance(params, dict) else {}))

    def _use(self, record: Session | None) -> None:
        self.record = record
        self._data.clear()
        if record is not None:
            if record.client_role is not None:
                self._data[SESSION_ROLE_KEY] = record.client_role
            if record.generation_params:
                self._data[GENERATION_PARAMS_KEY] = dict(record.generation_params)
            self._data.update(self.stores.local_sessions.get(record.id))


@dataclass
class BoundSession:
    """A request's session as handlers use it: `id` names it in the store; `data` holds the role and
    the generation overrides; `record` is the stored session."""

    id: str
    data: MutableMapping[str, Any]
    record: Session
    save: Callable[[], Awaitable[None]]

    @property
    def current_conversation_id(self) -> str | None:
        return self.record.current_conversation_id


def store_session_id(raw: object) -> str:
    """The store's session id for a session object's own id: the same when it has the store's
    form (fastsession's UUIDs do), else a digest of it."""
    text = str(raw)
    try:
        return check_session_id(text)
    except InvalidId:
        return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).decode().rstrip("=")


async def prepare_session(request: Request) -> None:
    """Read the stored session before a role check (the role is kept there). Creates nothing; a
    store that does not answer leaves the session unread (the browser's default role applies,
    and whatever needs the store answers 503 itself)."""
    session = getattr(request.state, "session", None)
    if isinstance(session, StoreSession):
        try:
            await session.load()
        except StoreError as exc:
            logger.warning("the session could not be read: %s", exc)


async def bind_session(request: Request, stores: StoreHandle, *, create: bool) -> BoundSession | None:
    """The request's session, created in the store when `create` (None: the request has no
    session middleware, skipped it, or, without `create`, has no stored session yet).
    Raises `StoreUnavailable` when the store does not answer."""
    session = getattr(request.state, "session", None)
    if session is None:
        return None
    if isinstance(session, StoreSession):
        record = await (session.ensure() if create else session.load())
        if record is None:
            return None
        store_session = session

        async def flush() -> None:
            store_session.save_session()
            await store_session.flush()

        return BoundSession(record.id, session.get_session(), record, flush)
    # A user's own session middleware (fastsession's FastSessionMiddleware or alike).
    session_id = store_session_id(session.get_session_id())
    store = await stores.get()
    record = await (store.create_session(session_id) if create else store.touch_session(session_id))
    if record is None:
        return None
    data = session.get_session()

    async def save() -> None:
        session.save_session()

    return BoundSession(session_id, data, record, save)


def has_session_middleware(request: Request) -> bool:
    return getattr(request.state, "session", None) is not None


__all__ = ["BoundSession", "StoreSession", "StoreUnavailable", "bind_session", "prepare_session"]
