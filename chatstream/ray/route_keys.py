"""What the ingress reads from a request (and its response) to route it: `RouteKey`s.

Only a few small things are parsed, never a prompt rendered: the `conversation_id` of a
/chat_stream body, the session cookie's id (not its signature: a forged cookie only routes
differently, the replica still refuses it), and the chained hashes of a /v1 chat's messages.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from http.cookies import CookieError, SimpleCookie

from chatstream.facade.conversation_handler import CONVERSATION_ID_HEADER
from chatstream.facade.session_cookie import COOKIE_NAME
from chatstream.ray.asgi_bridge import ProxiedRequest, ResponseStart
from chatstream.ray.router import RouteKey

STICKY_PATHS = frozenset({"/chat_stream"})
PREFIX_PATHS = frozenset({"/v1/chat/completions"})


def route_key(request: ProxiedRequest) -> RouteKey:
    if request.path in STICKY_PATHS:
        conversation_id = _json_field(request.body, "conversation_id")
        if isinstance(conversation_id, str) and conversation_id:
            return RouteKey(sticky=f"conversation:{conversation_id}")
        session_id = session_id_of(request.headers)
        return RouteKey(sticky=None if session_id is None else f"session:{session_id}")
    if request.path in PREFIX_PATHS:
        messages = _json_field(request.body, "messages")
        if isinstance(messages, list):
            return RouteKey(prefix_hashes=message_prefix_hashes(messages))
    return RouteKey()


def learned_keys(start: ResponseStart) -> list[str]:
    """The conversation and the new session a /chat_stream response names."""
    keys = []
    conversation_id = start.header(CONVERSATION_ID_HEADER)
    if conversation_id:
        keys.append(f"conversation:{conversation_id}")
    for name, value in start.headers:
        if name.lower() == "set-cookie":
            session_id = _cookie_session_id(value)
            if session_id is not None:
                keys.append(f"session:{session_id}")
    return keys


def session_id_of(headers: Iterable[tuple[str, str]]) -> str | None:
    for name, value in headers:
        if name.lower() == "cookie":
            session_id = _cookie_session_id(value)
            if session_id is not None:
                return session_id
    return None


def message_prefix_hashes(messages: list[object]) -> tuple[str, ...]:
    """One hash per prefix of `messages`, each chaining the one before (so equal hashes mean
    equal prefixes)."""
    hashes: list[str] = []
    previous = b""
    for message in messages:
        encoded = json.dumps(message, sort_keys=True, ensure_ascii=False).encode()
        previous = hashlib.blake2b(previous + encoded, digest_size=16).digest()
        hashes.append(previous.hex())
    return tuple(hashes)


def _cookie_session_id(header: str) -> str | None:
    try:
        cookie = SimpleCookie(header)
    except CookieError:
        return None
    morsel = cookie.get(COOKIE_NAME)
    if morsel is None or not morsel.value:
        return None
    # itsdangerous' TimestampSigner: "<id>.<timestamp>.<signature>"
    parts = morsel.value.rsplit(".", 2)
    return parts[0] if len(parts) == 3 and parts[0] else None


def _json_field(body: bytes, name: str) -> object:
    try:
        parsed = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError):
        return None
    return parsed.get(name) if isinstance(parsed, dict) else None
