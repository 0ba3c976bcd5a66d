"""Each token's own text and bytes, as OpenAI's log-probs show them.

A token can be part of a character (byte-level BPE splits UTF-8 sequences), so its text alone is
not always printable; OpenAI reports the token's exact UTF-8 `bytes` beside its `token` text (where
a partial character shows as U+FFFD). `TokenTexts` finds the bytes from the vocabulary itself: a
byte-level BPE token maps each of its characters back to one byte (GPT-2's reversible table), a
SentencePiece byte-fallback token `<0x0A>` is that byte, and "▁" is a space; any other token is
its decoded text. Results are cached per id (the vocabulary is fixed).
"""

from __future__ import annotations

import re
from typing import Any

_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def _byte_level_table() -> dict[str, int]:
    """GPT-2's byte-to-character table, reversed: printable Latin-1 bytes stand for themselves and
    the other 68 bytes are shifted to U+0100 and up, in byte order."""
    kept = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table = {chr(b): b for b in kept}
    shifted = 0
    for b in range(256):
        if b not in kept:
            table[chr(256 + shifted)] = b
            shifted += 1
    return table


class TokenTexts:
    """Text and bytes of single tokens of one tokenizer."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        backend = getattr(tokenizer, "backend_tokenizer", None)
        decoder = repr(getattr(backend, "decoder", None))
        self._byte_level = _byte_level_table() if "ByteLevel" in decoder else None
        self._cache: dict[int, tuple[str, list[int]]] = {}

    def text(self, token_id: int) -> str:
        return self._entry(token_id)[0]

    def bytes(self, token_id: int) -> list[int]:
        return self._entry(token_id)[1]

    def _entry(self, token_id: int) -> tuple[str, list[int]]:
        entry = self._cache.get(token_id)
        if entry is None:
            data = self._token_bytes(token_id)
            entry = (data.decode("utf-8", errors="replace"), list(data))
            self._cache[token_id] = entry
        return entry

    def _token_bytes(self, token_id: int) -> bytes:
        piece = self.tokenizer.convert_ids_to_tokens(int(token_id))
        if not isinstance(piece, str):  # an id the tokenizer does not know (padding of the model's vocabulary)
            return b""
        if token_id in getattr(self.tokenizer, "all_special_ids", ()):
            return piece.encode()
        if self._byte_level is not None and all(ch in self._byte_level for ch in piece):
            return bytes(self._byte_level[ch] for ch in piece)
        match = _BYTE_TOKEN.fullmatch(piece)
        if match:
            return bytes([int(match.group(1), 16)])
        if "\u2581" in piece:  # SentencePiece's word boundary
            return piece.replace("\u2581", " ").encode()
        return self.tokenizer.decode([int(token_id)], skip_special_tokens=False).encode()
