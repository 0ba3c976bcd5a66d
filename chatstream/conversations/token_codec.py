"""How a reply's token ids are stored: compact, and linear in the conversation's length.

Each turn's prompt is the whole conversation so far, so storing every prompt in full would grow
with the square of the number of turns. When a turn's prompt starts with the previous reply's
``prompt + output`` (the usual case: the next turn continues from the stored ids) only the new
part is stored, marked as extending the previous reply; otherwise the prompt is stored in full.
Since a conversation only ever loses messages at its end (`changes.py`), a stored chain never
points at a removed reply.

Blob layout (little-endian): kind (u8: 0 full, 1 extends), model id length (u16), model id
(UTF-8), number of stored prompt ids (u32), stored prompt ids (u32 each), output ids (u32 each).
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Sequence

from chatstream.conversations.models import Message, TurnTokens

_FULL, _EXTENDS = 0, 1
_TYPECODE = next(code for code in ("I", "L") if array(code).itemsize == 4)
_HEADER = struct.Struct("<BH")
_COUNT = struct.Struct("<I")


def _ids_to_bytes(ids: Sequence[int]) -> bytes:
    packed = array(_TYPECODE, ids)
    if sys.byteorder == "big":
        packed.byteswap()
    return packed.tobytes()


def _bytes_to_ids(data: bytes) -> tuple[int, ...]:
    packed = array(_TYPECODE)
    packed.frombytes(data)
    if sys.byteorder == "big":
        packed.byteswap()
    return tuple(packed)


def pack(tokens: TurnTokens, previous: TurnTokens | None) -> bytes:
    """`tokens` as a blob, relative to the nearest earlier reply's `previous` tokens."""
    prompt = tokens.prompt_token_ids
    kind = _FULL
    if previous is not None and previous.model_id == tokens.model_id:
        base = previous.all_token_ids
        if len(prompt) >= len(base) and prompt[:len(base)] == base:
            kind, prompt = _EXTENDS, prompt[len(base):]
    model = tokens.model_id.encode()
    return b"".join((_HEADER.pack(kind, len(model)), model, _COUNT.pack(len(prompt)),
                     _ids_to_bytes(prompt), _ids_to_bytes(tokens.output_token_ids)))


def unpack(blob: bytes, previous: TurnTokens | None) -> TurnTokens:
    kind, model_len = _HEADER.unpack_from(blob, 0)
    offset = _HEADER.size
    model_id = blob[offset:offset + model_len].decode()
    offset += model_len
    (num_prompt,) = _COUNT.unpack_from(blob, offset)
    offset += _COUNT.size
    prompt = _bytes_to_ids(blob[offset:offset + 4 * num_prompt])
    output = _bytes_to_ids(blob[offset + 4 * num_prompt:])
    if kind == _EXTENDS:
        if previous is None:
            raise ValueError("a stored token chain lost its previous reply")
        prompt = previous.all_token_ids + prompt
    return TurnTokens(model_id, prompt, output)


def previous_tokens(messages: Sequence[Message], index: int) -> TurnTokens | None:
    for message in reversed(messages[:index]):
        if message.tokens is not None:
            return message.tokens
    return None


def pack_message(messages: Sequence[Message], index: int) -> bytes | None:
    """The blob of `messages[index]` (None when it has no tokens), chained to the messages before it."""
    tokens = messages[index].tokens
    return None if tokens is None else pack(tokens, previous_tokens(messages, index))


def unpack_all(blobs: Sequence[bytes | None]) -> list[TurnTokens | None]:
    """Blobs in message order (None for messages without tokens) back to token ids."""
    result: list[TurnTokens | None] = []
    previous: TurnTokens | None = None
    for blob in blobs:
        tokens = None if blob is None else unpack(blob, previous)
        if tokens is not None:
            previous = tokens
        result.append(tokens)
    return result
