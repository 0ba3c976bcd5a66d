"""Log-probs in OpenAI's two shapes: chat's `logprobs.content` list and completions' column lists.

The engine reports `TokenLogprobs` per position; these builders turn them into JSON with each
token's text and bytes (`TokenTexts`). A log-prob of -inf (a token that cannot occur, e.g. masked
by a grammar) has no JSON number: it is sent as -9999.0, the value OpenAI uses for such tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from chatstream.engine.logprobs import TokenLogprobs
from chatstream.http.openai.token_texts import TokenTexts

IMPOSSIBLE = -9999.0


def _number(logprob: float) -> float:
    return logprob if math.isfinite(logprob) else IMPOSSIBLE


def chat_logprobs_content(entries: Sequence[TokenLogprobs], texts: TokenTexts, num_top: int) -> list[dict[str, Any]]:
    """Chat's `logprobs.content` items for `entries` (each with its `num_top` best tokens)."""
    return [{"token": texts.text(e.token_id), "logprob": _number(e.logprob), "bytes": texts.bytes(e.token_id),
             "top_logprobs": [{"token": texts.text(t), "logprob": _number(lp), "bytes": texts.bytes(t)}
                              for t, lp in e.top[:num_top]]}
            for e in entries]


class CompletionLogprobs:
    """Completions' `logprobs` object as it grows: `tokens`, `token_logprobs`, `top_logprobs` (each
    position's best tokens by text, with the chosen token added when it is not among them, as vLLM
    does) and `text_offset` (where each token starts in the choice's text)."""

    def __init__(self, texts: TokenTexts, num_top: int) -> None:
        self.texts, self.num_top = texts, num_top
        self.tokens: list[str] = []
        self.token_logprobs: list[float | None] = []
        self.top_logprobs: list[dict[str, float] | None] = []
        self.text_offset: list[int] = []
        self._offset = 0

    def add_prompt(self, token_ids: Sequence[int], entries: Sequence[TokenLogprobs | None]) -> None:
        """The echoed prompt: `entries[0]` is None (nothing predicts the first token)."""
        for token, entry in zip(token_ids, entries):
            self._add(token, entry)

    def add(self, entries: Sequence[TokenLogprobs]) -> None:
        for entry in entries:
            self._add(entry.token_id, entry)

    def _add(self, token_id: int, entry: TokenLogprobs | None) -> None:
        text = self.texts.text(token_id)
        self.tokens.append(text)
        self.text_offset.append(self._offset)
        self._offset += len(text)
        if entry is None:
            self.token_logprobs.append(None)
            self.top_logprobs.append(None)
            return
        self.token_logprobs.append(_number(entry.logprob))
        top = {self.texts.text(t): _number(lp) for t, lp in entry.top[:self.num_top]}
        top.setdefault(text, _number(entry.logprob))
        self.top_logprobs.append(top)

    def take(self, start: int = 0) -> dict[str, Any]:
        """The object from position `start` on (a stream sends each chunk's own positions)."""
        return {"tokens": self.tokens[start:], "token_logprobs": self.token_logprobs[start:],
                "top_logprobs": self.top_logprobs[start:], "text_offset": self.text_offset[start:]}

    def __len__(self) -> int:
        return len(self.tokens)
