"""The Redis backend's keys and the Lua scripts that make its small writes atomic.

Keys, under a prefix (default ``chatstream``; several stores can share one database):

- ``P:s:SESSION`` (hash): created_at, last_seen_at, and as JSON current_conversation_id,
  client_role, generation_params; PEXPIRE = the session TTL, renewed on every touch.
- ``P:si:SESSION`` (sorted set): the session's conversation ids, score = updated_at.
- ``P:c:CONV`` (hash, "meta"): session_id, title, system, created_at, updated_at, rev; while a
  reply is open also open_reply_id, open_text (its live text), open_lease_until.
- ``P:co:CONV`` (list): message ids in order.
- ``P:cm:CONV`` (hash): message id -> message JSON (`records.py`).
- ``P:ck:CONV`` (hash): message id -> packed token ids (`token_codec.py`).

Every write to a conversation changes ``P:c:CONV`` (at least ``rev``), so a writer that WATCHes
that one key sees any concurrent write, from any process, and retries. The conversation's keys
get PEXPIRE = conversation TTL on every write when a TTL is set.
"""

from __future__ import annotations

from dataclasses import dataclass

# Returns {meta, order, messages, tokens} as flat arrays, or false when the conversation is absent.
# One script so the four reads are one consistent snapshot, also inside a WATCH (unlike MULTI).
READ_CONVERSATION = """
local meta = redis.call('HGETALL', KEYS[1])
if #meta == 0 then return false end
local tokens = {}
if ARGV[1] == '1' then tokens = redis.call('HGETALL', KEYS[4]) end
return {meta, redis.call('LRANGE', KEYS[2], 0, -1), redis.call('HGETALL', KEYS[3]), tokens}
"""

# The hot path of streaming: ARGV session_id, reply_id, text, lease_until, cutoff ('' for no TTL).
SET_REPLY_TEXT = """
local meta = redis.call('HMGET', KEYS[1], 'session_id', 'open_reply_id', 'updated_at')
if (not meta[1]) or meta[1] ~= ARGV[1] then return 'no_conversation' end
if ARGV[5] ~= '' and tonumber(meta[3]) < tonumber(ARGV[5]) then return 'no_conversation' end
if meta[2] ~= ARGV[2] then return 'closed' end
redis.call('HSET', KEYS[1], 'open_text', ARGV[3], 'open_lease_until', ARGV[4])
return 'ok'
"""

# Create or touch: ARGV now, ttl_ms ('' for none). Returns the session hash.
CREATE_SESSION = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'created_at', ARGV[1], 'current_conversation_id', 'null',
             'client_role', 'null', 'generation_params', '{}')
end
redis.call('HSET', KEYS[1], 'last_seen_at', ARGV[1])
if ARGV[2] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return redis.call('HGETALL', KEYS[1])
"""

# Touch, and set field/value pairs (ARGV[3:]); false when the session is gone.
TOUCH_SESSION = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HSET', KEYS[1], 'last_seen_at', ARGV[1], unpack(ARGV, 3))
if ARGV[2] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return redis.call('HGETALL', KEYS[1])
"""


@dataclass(frozen=True)
class Keys:
    prefix: str

    def session(self, session_id: str) -> str:
        return f"{self.prefix}:s:{session_id}"

    def index(self, session_id: str) -> str:
        return f"{self.prefix}:si:{session_id}"

    def meta(self, conversation_id: str) -> str:
        return f"{self.prefix}:c:{conversation_id}"

    def order(self, conversation_id: str) -> str:
        return f"{self.prefix}:co:{conversation_id}"

    def messages(self, conversation_id: str) -> str:
        return f"{self.prefix}:cm:{conversation_id}"

    def tokens(self, conversation_id: str) -> str:
        return f"{self.prefix}:ck:{conversation_id}"

    def conversation(self, conversation_id: str) -> list[str]:
        """The four keys of one conversation, in the order READ_CONVERSATION takes them."""
        return [self.meta(conversation_id), self.order(conversation_id), self.messages(conversation_id),
                self.tokens(conversation_id)]
