"""One request's place in its grammar: the token bitmask for its next step, and accepting tokens.

A `GrammarMatcher` wraps an llguidance matcher that `GrammarCompiler` made for this request. The
engine thread alone uses it: before sampling, `fill_bitmask` writes which tokens may come next
(bit t of the row set = token t allowed, 32 tokens per int32) for the sampler's bitmask step;
after sampling, `accept` advances the grammar by the chosen token. Once the grammar is complete
the request's own stop tokens are allowed too (an end-of-turn token, say), and `is_finished`
turns True when nothing can follow.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

BITS = 32


def bitmask_width(vocab_size: int) -> int:
    """int32 words per bitmask row."""
    return (vocab_size + BITS - 1) // BITS


class GrammarMatcher:
    """A request's grammar state (not thread-safe: the engine thread owns it once queued)."""

    def __init__(self, matcher: Any, vocab_size: int) -> None:
        self._matcher = matcher
        self.vocab_size = vocab_size

    @property
    def is_finished(self) -> bool:
        """True when the grammar allows no further token (the request should end)."""
        return bool(self._matcher.is_stopped())

    @property
    def is_accepting(self) -> bool:
        """True when the output so far is complete (ending here would be valid)."""
        return bool(self._matcher.is_accepting())

    def fill_bitmask(self, row: torch.Tensor, stop_token_ids: Iterable[int] = ()) -> None:
        """Write the allowed next tokens into `row` ([bitmask_width] int32, contiguous, on the CPU).

        When the output is complete, `stop_token_ids` are allowed as well. Raises ValueError when the
        grammar is in an error state.
        """
        if row.dtype != torch.int32 or not row.is_contiguous() or row.device.type != "cpu":
            raise ValueError("a grammar bitmask row must be contiguous int32 on the CPU")
        self._check()
        self._matcher.unsafe_compute_mask_ptr(row.data_ptr(), row.numel() * row.element_size())
        self._check()
        if self.is_accepting:
            for token in stop_token_ids:
                if 0 <= token < self.vocab_size:
                    word, bit = divmod(token, BITS)
                    # int32 words: bit 31 is the sign bit, so set it through the signed value.
                    row[word] = int(row[word]) | (1 << bit) if bit < 31 else int(row[word]) | -(1 << 31)

    def accept(self, token_id: int) -> None:
        """Advance by the sampled token; raises ValueError when the grammar does not allow it."""
        if not self._matcher.consume_token(int(token_id)):
            raise ValueError(f"the grammar does not allow token {token_id}: {self._error()}")

    def _check(self) -> None:
        if self._matcher.is_error():
            raise ValueError(f"the grammar failed: {self._error()}")

    def _error(self) -> str:
        message = str(self._matcher.get_error() or "no further token allowed").strip()
        return message.splitlines()[0][:300] if message else "no further token allowed"
