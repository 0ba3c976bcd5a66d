"""Stored token ids: exact round trips, and a conversation's storage linear in its length."""

from __future__ import annotations

import random

from chatstream.conversations import token_codec
from chatstream.conversations.models import TurnTokens


def test_a_turn_that_continues_the_previous_one_stores_only_its_new_ids():
    rng = random.Random(1)
    previous: TurnTokens | None = None
    blobs, turns = [], []
    history: tuple[int, ...] = ()
    for _ in range(30):
        prompt = history + tuple(rng.randrange(50_000) for _ in range(20))
        output = tuple(rng.randrange(50_000) for _ in range(40))
        tokens = TurnTokens("smollm2", prompt, output)
        blob = token_codec.pack(tokens, previous)
        assert len(blob) < 4 * 70  # the 60 new ids and a small header, whatever the turn's number
        assert token_codec.unpack(blob, previous) == tokens
        blobs.append(blob)
        turns.append(tokens)
        previous, history = tokens, prompt + output
    assert token_codec.unpack_all(blobs) == turns


def test_a_prompt_that_does_not_continue_or_another_model_is_stored_whole():
    first = TurnTokens("a", (1, 2), (3,))
    rewritten = TurnTokens("a", (1, 9, 3, 4), (5,))
    other_model = TurnTokens("b", (1, 2, 3, 4), (5,))
    for tokens in (rewritten, other_model):
        blob = token_codec.pack(tokens, first)
        assert token_codec.unpack(blob, None) == tokens  # needs nothing before it
    assert token_codec.unpack_all([token_codec.pack(first, None), None, token_codec.pack(rewritten, first)]) == [
        first, None, rewritten]


def test_extremes():
    tokens = TurnTokens("ü-model", (0, 2**32 - 1), ())
    assert token_codec.unpack(token_codec.pack(tokens, None), None) == tokens
    empty = TurnTokens("m", (), ())
    assert token_codec.unpack(token_codec.pack(empty, None), None) == empty
