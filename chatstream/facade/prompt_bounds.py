"""`PromptMeasure`: a lower bound on a text's token count, known without tokenizing it.

No token of a vocabulary stands for more UTF-8 bytes than the longest entry of the vocabulary
(byte-level BPE entries spell one byte per character, SentencePiece's "▁" and byte-fallback
entries are longer than the bytes they stand for, added tokens are matched literally), so a text
of B bytes has at least ceil(B / max_bytes_per_token) tokens. A prompt whose bound already passes
the context is refused (or, for a conversation, its old exchanges left out) before the expensive
encoding: a 2 MB prompt costs a byte count, not a second of tokenizing.

The bound assumes the tokenizer does not drop characters before tokenizing; a tokenizer whose
normalizer deletes large parts of a text could see a prompt refused that would fit. Tokenizers
without a vocabulary give no bound (0).
"""

from __future__ import annotations

from typing import Protocol


class _Vocabulary(Protocol):
    def get_vocab(self) -> dict[str, int]: ...


def max_bytes_per_token(tokenizer: object) -> int | None:
    """The UTF-8 length of the tokenizer's longest vocabulary entry (None when it has no vocabulary)."""
    get_vocab = getattr(tokenizer, "get_vocab", None)
    if get_vocab is None:
        return None
    try:
        vocab = get_vocab()
    except Exception:  # noqa: BLE001 - a tokenizer without a usable vocabulary gives no bound
        return None
    longest = max((len(token.encode("utf-8", "surrogatepass")) for token in vocab), default=0)
    return longest or None


class PromptMeasure:
    """`min_tokens(text)`: at least this many tokens; 0 when the tokenizer gives no bound."""

    def __init__(self, tokenizer: object) -> None:
        self.max_bytes_per_token = max_bytes_per_token(tokenizer)

    def min_tokens(self, text: str) -> int:
        if not self.max_bytes_per_token:
            return 0
        num_bytes = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        return -(-num_bytes // self.max_bytes_per_token)

    def max_chars_for(self, num_tokens: int) -> int | None:
        """A text of more UTF-8 bytes than this certainly has more than `num_tokens` tokens."""
        return None if not self.max_bytes_per_token else num_tokens * self.max_bytes_per_token
