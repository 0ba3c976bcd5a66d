"""Store URLs and `open_store`: which backend, where, with which options.

- ``memory``: this process's memory (tests, the embedded default of `ChatStream(...)`).
- ``sqlite:///relative/file.sqlite3``, ``sqlite:////absolute/file.sqlite3``: an SQLite file (three
  slashes, then the path, as SQLAlchemy writes it). ``?synchronous=full`` fsyncs every commit
  (default ``normal``: safe against process crashes, see sqlite_store.py).
- ``redis://[:password@]host:port/db``, ``rediss://...``, ``unix:///path.sock?db=N``: Redis, shared
  by several processes. ``?prefix=NAME`` puts the keys under ``NAME:`` (default ``chatstream``);
  other parameters go to the redis client.

`parse_store_url` checks a URL without opening anything (for the CLI, before the model loads).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from chatstream.conversations.errors import StoreConfigError
from chatstream.conversations.options import StoreOptions
from chatstream.conversations.store import ConversationStore

DEFAULT_REDIS_PREFIX = "chatstream"
_PREFIX = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_REDIS_SCHEMES = ("redis", "rediss", "unix")


@dataclass(frozen=True)
class StoreUrl:
    kind: Literal["memory", "sqlite", "redis"]
    sqlite_path: Path | None = None
    sqlite_synchronous: Literal["normal", "full"] = "normal"
    redis_url: str | None = None  # the URL for the redis client, without our own parameters
    redis_prefix: str = DEFAULT_REDIS_PREFIX


def _params(query: str, allowed: tuple[str, ...], url: str) -> dict[str, str]:
    params = dict(parse_qsl(query, keep_blank_values=True))
    for name in params:
        if name not in allowed:
            raise StoreConfigError(f"conversation store URL {redacted(url)!r}: unknown parameter {name!r} "
                                   f"(allowed: {', '.join(allowed) or 'none'})")
    return params


def parse_store_url(url: str) -> StoreUrl:
    """The parsed URL; `StoreConfigError` (a ValueError) saying what is wrong."""
    if not isinstance(url, str) or not url.strip():
        raise StoreConfigError("a conversation store URL is required: memory, sqlite:///PATH or redis://HOST:PORT/DB")
    url = url.strip()
    if url in ("memory", "memory://"):
        return StoreUrl("memory")
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        parts = urlsplit(url)
        if not url.startswith("sqlite:///") or parts.netloc:
            raise StoreConfigError(f"conversation store URL {url!r}: write sqlite:///relative/path or "
                                   "sqlite:////absolute/path")
        path = unquote(parts.path[1:])
        if not path or path == ":memory:":
            raise StoreConfigError(f"conversation store URL {url!r}: give a file path (use 'memory' for no file)")
        synchronous = _params(parts.query, ("synchronous",), url).get("synchronous", "normal").lower()
        if synchronous not in ("normal", "full"):
            raise StoreConfigError(f"conversation store URL {url!r}: synchronous must be normal or full")
        return StoreUrl("sqlite", sqlite_path=Path(path).expanduser(), sqlite_synchronous=synchronous)  # type: ignore[arg-type]
    if scheme in _REDIS_SCHEMES:
        parts = urlsplit(url)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        prefix = params.pop("prefix", DEFAULT_REDIS_PREFIX)
        if not _PREFIX.fullmatch(prefix):
            raise StoreConfigError(f"conversation store URL {redacted(url)!r}: prefix must be 1 to 64 characters "
                                   "of A-Z a-z 0-9 _ . -")
        if parts.scheme != "unix" and not re.fullmatch(r"/?(\d+)?", parts.path):
            raise StoreConfigError(f"conversation store URL {redacted(url)!r}: the path must be a database "
                                   f"number (redis://HOST:PORT/DB), got {parts.path!r}")
        query = urlencode(params)
        # Built by hand: urlunsplit drops the "//" of a URL without a host (unix:///path).
        client_url = f"{parts.scheme}://{parts.netloc}{parts.path}" + (f"?{query}" if query else "")
        try:
            from redis.connection import parse_url
        except ImportError:  # pragma: no cover - redis is a dependency
            raise StoreConfigError("the redis store needs the 'redis' package (pip install redis)") from None
        try:
            parse_url(client_url)
        except ValueError as exc:
            raise StoreConfigError(f"conversation store URL {redacted(url)!r}: {exc}") from None
        return StoreUrl("redis", redis_url=client_url, redis_prefix=prefix)
    raise StoreConfigError(f"conversation store URL {redacted(url)!r}: unknown kind {scheme!r}; "
                           "use memory, sqlite:///PATH or redis://HOST:PORT/DB")


def redacted(url: str) -> str:
    """The URL without its password (for logs and error messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


async def open_store(url: str, options: StoreOptions | None = None) -> ConversationStore:
    """Opens the store the URL names. SQLite opens (and creates) its file here, so an unusable path
    fails at start with `StoreUnavailable`; Redis connects on first use, so a server that starts
    while Redis is down still serves everything else, and each store call raises
    `StoreUnavailable` until Redis is back."""
    options = options or StoreOptions()
    parsed = parse_store_url(url)
    if parsed.kind == "memory":
        from chatstream.conversations.memory_store import MemoryBackend

        return ConversationStore(MemoryBackend(options))
    if parsed.kind == "sqlite":
        from chatstream.conversations.sqlite_store import SqliteBackend

        assert parsed.sqlite_path is not None
        return ConversationStore(await SqliteBackend.open(parsed.sqlite_path, options, parsed.sqlite_synchronous))
    from chatstream.conversations.redis_store import RedisBackend

    assert parsed.redis_url is not None
    return ConversationStore(RedisBackend(parsed.redis_url, parsed.redis_prefix, options, redacted(url)))
