"""`EasyLocale`: picking one language out of a `{"en": ..., "ja": ...}` message, as the original's
log lines (and request handlers written for it, through `self.eloc.to_str(...)`) do.

`EasyLocale({"locale": "ja-JP", "fallback_locale": "en"})`: `to_str(message)` returns a plain
string as it is; for a dict it tries the full locale ("ja-JP"), then its language ("ja"), then
the fallback. Without a locale, the process's locale decides (`locale.getlocale()`), else "en".
"""

from __future__ import annotations

import locale as _locale
from collections.abc import Mapping
from typing import Any

DEFAULT_LOCALE = "en"

# What locale.getlocale() may call a language (on Windows, by name) -> its ISO 639-1 code.
_LANGUAGE_NAMES = {"japanese": "ja", "chinese": "zh", "korean": "ko", "english": "en", "french": "fr",
                   "german": "de", "italian": "it"}


def system_locale() -> str:
    """The process's language as an ISO 639-1 code ("en" when unknown)."""
    try:
        name = _locale.getlocale()[0]
    except ValueError:
        return DEFAULT_LOCALE
    if not name:
        return DEFAULT_LOCALE
    language = name.split("_")[0]
    if language.lower() in _LANGUAGE_NAMES:
        return _LANGUAGE_NAMES[language.lower()]
    return language.lower() if len(language) == 2 else DEFAULT_LOCALE


class EasyLocale:
    """One language for messages given in several; see the module docstring."""

    def __init__(self, opts: Mapping[str, Any] | None = None) -> None:
        opts = opts or {}
        self.fallback_locale: str = opts.get("fallback_locale") or DEFAULT_LOCALE
        self.locale: str = opts.get("locale") or system_locale()

    def get_locale(self) -> str:
        return self.locale

    def to_str(self, message: object) -> str:
        """`message` in this locale: a str as is, a `{locale: text}` dict by locale, language, then
        the fallback ("" if none of them is there); anything else "(locale_type_error)"."""
        if isinstance(message, str):
            return message
        if not isinstance(message, Mapping):
            return "(locale_type_error)"
        for key in (self.locale, self.locale.split("-")[0].split("_")[0], self.fallback_locale):
            text = message.get(key)
            if text:
                return str(text)
        return ""
