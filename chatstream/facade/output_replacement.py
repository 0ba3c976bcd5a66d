"""Output replacement rules (e.g. rinna's "<NL>" -> newline) applied to a reply while it streams.

A ChatPrompt's `get_replacement_when_output()` gives `(old, new)` pairs. The reply grows a few
characters at a time, so a search string may be half-generated at the end ("<", "<N"); showing it
and then replacing it would make the text flicker. `visible_reply` therefore holds back the
longest tail that could still become a search string, until it is disproved or the reply ends.
"""

from __future__ import annotations

from collections.abc import Sequence


def _held_back_len(text: str, olds: Sequence[str]) -> int:
    """Length of the longest tail of `text` that is a proper prefix of some search string."""
    longest = 0
    for old in olds:
        for size in range(min(len(old) - 1, len(text)), longest, -1):
            if text.endswith(old[:size]):
                longest = size
                break
    return longest


def visible_reply(text: str, replacements: Sequence[tuple[str, str]] | None, final: bool) -> str:
    """The part of the model-native `text` that is safe to show, with the replacements applied."""
    if not replacements:
        return text
    pairs = [(old, new) for old, new in replacements if old]
    if not final:
        held = _held_back_len(text, [old for old, _ in pairs])
        if held:
            text = text[:-held]
    for old, new in pairs:
        text = text.replace(old, new)
    return text
