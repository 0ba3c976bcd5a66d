"""The `redis://HOST:PORT/DB` backend: one store shared by several processes (engine replicas).

Atomicity across processes: the small writes (a reply's partial text, session touches) are Lua
scripts; every other write to a conversation is optimistic: WATCH its meta key, read it (one Lua
snapshot), plan the change in Python, then MULTI/EXEC the whole change. If another writer touched
the conversation in between, EXEC fails and the write is planned again from fresh data, so turns of
concurrent writers never mix. Redis errors (connection refused, timeouts, a read-only replica,
MISCONF) leave as `StoreUnavailable`; the client reconnects by itself when Redis is back.
Expiry is Redis's own (PEXPIRE); `purge_expired` has nothing to do.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError, WatchError

from chatstream.conversations import records, token_codec
from chatstream.conversations.backend import Plan, ReplyUpdate, StorageBackend
from chatstream.conversations.changes import Change, StoredConversation
from chatstream.conversations.errors import StoreUnavailable
from chatstream.conversations.models import Conversation, ConversationSummary, Message, Session, StoreSize
from chatstream.conversations.options import StoreOptions
from chatstream.conversations.pagination import Position
from chatstream.conversations.redis_layout import CREATE_SESSION, READ_CONVERSATION, SET_REPLY_TEXT, TOUCH_SESSION, Keys

MAX_WRITE_ATTEMPTS = 100
_OPEN_FIELDS = ("open_reply_id", "open_text", "open_lease_until")


def _pairs(flat: list[bytes]) -> dict[str, bytes]:
    return {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}


class RedisBackend(StorageBackend):
    def __init__(self, url: str, prefix: str, options: StoreOptions, shown_url: str) -> None:
        super().__init__(options)
        self._shown_url = shown_url
        self._keys = Keys(prefix)
        self._redis = aioredis.Redis.from_url(
            url, decode_responses=False, socket_connect_timeout=2.0, socket_timeout=5.0,
            retry=Retry(ExponentialBackoff(cap=0.25, base=0.05), 2), health_check_interval=30)
        self._read = self._redis.register_script(READ_CONVERSATION)
        self._set_text = self._redis.register_script(SET_REPLY_TEXT)
        self._create_session = self._redis.register_script(CREATE_SESSION)
        self._touch_session = self._redis.register_script(TOUCH_SESSION)

    def describe(self) -> str:
        return self._shown_url

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (RedisError, OSError) as exc:
            if isinstance(exc, WatchError):
                raise
            raise StoreUnavailable(f"redis conversation store {self._shown_url}: {exc}") from exc

    @staticmethod
    def _ms(seconds: float | None) -> str:
        return "" if seconds is None else str(max(1, int(seconds * 1000)))

    # -- sessions --------------------------------------------------------------------------------------------------

    def _session(self, session_id: str, raw: Any, now: float) -> Session | None:
        if not raw:
            return None
        fields = _pairs(raw)
        if "created_at" not in fields or self.session_expired(float(fields["last_seen_at"]), now):
            return None
        return Session(session_id, float(fields["created_at"]), float(fields["last_seen_at"]),
                       json.loads(fields["current_conversation_id"]), json.loads(fields["client_role"]),
                       json.loads(fields["generation_params"]))

    async def create_session(self, session_id: str, now: float) -> Session:
        with self._errors():
            raw = await self._create_session(keys=[self._keys.session(session_id)],
                                             args=[repr(now), self._ms(self.options.session_ttl_s)])
        session = self._session(session_id, raw, now)
        assert session is not None
        return session

    async def get_session(self, session_id: str, now: float, *, touch: bool) -> Session | None:
        return await self.update_session(session_id, now, {}) if touch else self._session(
            session_id, await self._hgetall_flat(self._keys.session(session_id)), now)

    async def _hgetall_flat(self, key: str) -> list[bytes]:
        with self._errors():
            mapping = await self._redis.hgetall(key)
        return [item for pair in mapping.items() for item in pair]

    async def update_session(self, session_id: str, now: float, fields: dict[str, Any]) -> Session | None:
        pairs = [item for name, value in fields.items() for item in (name, json.dumps(value))]
        with self._errors():
            raw = await self._touch_session(keys=[self._keys.session(session_id)],
                                            args=[repr(now), self._ms(self.options.session_ttl_s), *pairs])
        return self._session(session_id, raw, now)

    # -- conversations ---------------------------------------------------------------------------------------------

    def _decode(self, session_id: str, conversation_id: str, raw: Any, now: float) -> StoredConversation | None:
        if not raw:
            return None
        meta = _pairs(raw[0])
        if meta.get("session_id", b"").decode() != session_id:
            return None
        updated_at = float(meta["updated_at"])
        if self.conversation_expired(updated_at, now):
            return None
        stored_messages, blobs = _pairs(raw[2]), _pairs(raw[3])
        order = [mid.decode() for mid in raw[1]]
        open_id = meta.get("open_reply_id", b"").decode()
        tokens = token_codec.unpack_all([blobs.get(mid) for mid in order]) if raw[3] else [None] * len(order)
        messages: list[Message] = []
        for mid, turn_tokens in zip(order, tokens, strict=True):
            record = json.loads(stored_messages[mid])
            if mid == open_id:
                record["text"] = meta["open_text"].decode()
            messages.append(records.message_from_record(record, turn_tokens))
        conversation = Conversation(conversation_id, session_id, meta["title"].decode(), meta["system"].decode(),
                                    float(meta["created_at"]), updated_at, tuple(messages))
        lease = float(meta["open_lease_until"]) if open_id and "open_lease_until" in meta else None
        return StoredConversation(conversation, lease)

    def _queue_ttl(self, pipe: Pipeline, conversation_id: str, session_id: str) -> None:
        ttl = self._ms(self.options.conversation_ttl_s)
        if ttl:
            for key in (*self._keys.conversation(conversation_id), self._keys.index(session_id)):
                pipe.pexpire(key, int(ttl))

    def _queue_messages(self, pipe: Pipeline, conversation: Conversation, indices: list[int], keep: int) -> None:
        cid = conversation.id
        for i in indices:
            message = conversation.messages[i]
            if i >= keep:
                pipe.rpush(self._keys.order(cid), message.id)
            pipe.hset(self._keys.messages(cid), message.id, records.message_to_json(message))
            blob = token_codec.pack_message(conversation.messages, i)
            if blob is None:
                pipe.hdel(self._keys.tokens(cid), message.id)
            else:
                pipe.hset(self._keys.tokens(cid), message.id, blob)

    def _queue_meta(self, pipe: Pipeline, c: Conversation, lease: float | None) -> None:
        pipe.hset(self._keys.meta(c.id), mapping={
            "session_id": c.session_id, "title": c.title, "system": c.system, "created_at": repr(c.created_at),
            "updated_at": repr(c.updated_at)})
        pipe.hincrby(self._keys.meta(c.id), "rev", 1)
        reply = c.open_reply
        if reply is None:
            pipe.hdel(self._keys.meta(c.id), *_OPEN_FIELDS)
        else:
            pipe.hset(self._keys.meta(c.id), mapping={"open_reply_id": reply.id, "open_text": reply.text,
                                                      "open_lease_until": repr(lease)})
        pipe.zadd(self._keys.index(c.session_id), {c.id: c.updated_at})

    async def insert(self, conversation: Conversation) -> None:
        with self._errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                self._queue_meta(pipe, conversation, None)
                self._queue_messages(pipe, conversation, list(range(len(conversation.messages))), 0)
                self._queue_ttl(pipe, conversation.id, conversation.session_id)
                await pipe.execute()

    async def load(self, session_id: str, conversation_id: str, now: float,
                   include_tokens: bool) -> StoredConversation | None:
        with self._errors():
            raw = await self._read(keys=self._keys.conversation(conversation_id),
                                   args=["1" if include_tokens else "0"])
        return self._decode(session_id, conversation_id, raw, now)

    def _queue_change(self, pipe: Pipeline, stored: StoredConversation, change: Change, result: Conversation) -> None:
        cid = result.id
        removed = [m.id for m in change.removed(stored.conversation)]
        if removed:
            if change.keep == 0:
                pipe.delete(self._keys.order(cid))
            else:
                pipe.ltrim(self._keys.order(cid), 0, change.keep - 1)
            pipe.hdel(self._keys.messages(cid), *removed)
            pipe.hdel(self._keys.tokens(cid), *removed)
        self._queue_messages(pipe, result, change.written_indices(), change.keep)
        self._queue_meta(pipe, result, change.result_lease(result, stored.lease_until))
        self._queue_ttl(pipe, cid, result.session_id)

    async def write(self, session_id: str, conversation_id: str, now: float, plan: Plan) -> Conversation | None:
        with self._errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                for _ in range(MAX_WRITE_ATTEMPTS):
                    try:
                        await pipe.watch(self._keys.meta(conversation_id))
                        raw = await self._read(keys=self._keys.conversation(conversation_id), args=["1"], client=pipe)
                        stored = self._decode(session_id, conversation_id, raw, now)
                        if stored is None:
                            await pipe.unwatch()
                            return None
                        change = plan(stored, now)
                        result = change.apply(stored.conversation)
                        pipe.multi()
                        self._queue_change(pipe, stored, change, result)
                        await pipe.execute()
                        return result
                    except WatchError:
                        continue  # another writer changed it: plan again from what it wrote
        raise StoreUnavailable(f"redis conversation store {self._shown_url}: conversation {conversation_id} "
                               f"kept changing under {MAX_WRITE_ATTEMPTS} attempts to write it")

    async def delete(self, session_id: str, conversation_id: str, now: float) -> bool:
        with self._errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        await pipe.watch(self._keys.meta(conversation_id))
                        owner, updated = await pipe.hmget(self._keys.meta(conversation_id), "session_id", "updated_at")
                        if owner is None or owner.decode() != session_id or \
                                self.conversation_expired(float(updated), now):
                            await pipe.unwatch()
                            return False
                        pipe.multi()
                        pipe.delete(*self._keys.conversation(conversation_id))
                        pipe.zrem(self._keys.index(session_id), conversation_id)
                        await pipe.execute()
                        return True
                    except WatchError:
                        continue

    async def list(self, session_id: str, now: float, limit: int, after: Position | None) -> list[ConversationSummary]:
        index = self._keys.index(session_id)
        found: list[ConversationSummary] = []
        offset, batch = 0, limit + 1
        with self._errors():
            if self.options.conversation_ttl_s is not None:
                await self._redis.zremrangebyscore(index, "-inf", f"({now - self.options.conversation_ttl_s!r}")
            while len(found) <= limit:
                top = "+inf" if after is None else repr(after[0])
                page = await self._redis.zrange(index, top, "-inf", desc=True, byscore=True, withscores=True,
                                                offset=offset, num=batch)
                offset += len(page)
                candidates = [(m.decode(), s) for m, s in page if after is None or (s, m.decode()) < after]
                async with self._redis.pipeline(transaction=False) as pipe:
                    for cid, _ in candidates:
                        pipe.hmget(self._keys.meta(cid), "session_id", "title", "created_at")
                        pipe.llen(self._keys.order(cid))
                    replies = await pipe.execute()
                metas, counts = replies[::2], replies[1::2]
                for (cid, score), (owner, title, created), count in zip(candidates, metas, counts, strict=True):
                    if owner is None or owner.decode() != session_id:
                        await self._redis.zrem(index, cid)  # deleted or expired under us
                        continue
                    found.append(ConversationSummary(cid, title.decode(), float(created), score, count))
                if len(page) < batch:
                    break
        return found[:limit + 1]

    async def set_reply_text(self, session_id: str, conversation_id: str, reply_id: str, text: str,
                             now: float, lease_until: float) -> ReplyUpdate:
        ttl = self.options.conversation_ttl_s
        with self._errors():
            outcome = await self._set_text(
                keys=[self._keys.meta(conversation_id)],
                args=[session_id, reply_id, text, repr(lease_until), "" if ttl is None else repr(now - ttl)])
        return outcome.decode()  # type: ignore[no-any-return]

    # -- upkeep ----------------------------------------------------------------------------------------------------

    async def size(self, now: float) -> StoreSize:
        prefix = self._keys.prefix
        with self._errors():
            sessions = [k async for k in self._redis.scan_iter(match=f"{prefix}:s:*", count=1000)]
            metas = [k async for k in self._redis.scan_iter(match=f"{prefix}:c:*", count=1000)]
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in metas:
                    pipe.llen(self._keys.order(key.decode().rsplit(":", 1)[1]))
                counts = await pipe.execute()
        return StoreSize(len(sessions), len(metas), sum(counts))

    async def purge_expired(self, now: float) -> None:
        return None  # Redis expires keys itself; lists drop expired entries as they are read

    async def ping(self) -> None:
        with self._errors():
            await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()
