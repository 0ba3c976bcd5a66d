"""The original repository's tests of its two small helpers, ported: `EasyLocale` (a message given in several
languages, picked by locale, language and fallback) and `merge_dict` (overrides that are not None win).

Source: the original repository's tests/test_easy_locale.py and tests/test_merge_dict.py (written again here).
"""

from __future__ import annotations

from chatstream.easy_locale import EasyLocale
from chatstream.merge_dic import merge_dict

GREETING = {"ja": "こんにちは", "en": "Hello"}


def test_easy_locale() -> None:
    assert EasyLocale({"fallbackLocale": "en"}).to_str(GREETING) in ("こんにちは", "Hello")  # the system's locale
    assert EasyLocale({"locale": "en"}).to_str(GREETING) == "Hello"
    assert EasyLocale({"locale": "en-US"}).to_str(GREETING) == "Hello"
    japanese = EasyLocale({"locale": "ja-JP"})
    assert japanese.to_str(GREETING) == "こんにちは"
    assert japanese.to_str("おはよう") == "おはよう"
    assert EasyLocale({"locale": None}).to_str(GREETING) in ("こんにちは", "Hello")
    assert EasyLocale({"locale": "fr", "fallback_locale": "ja"}).to_str(GREETING) == "こんにちは"
    assert EasyLocale({"locale": "en"}).to_str(42) == "(locale_type_error)"


def test_merge_dict() -> None:
    source = {"a": "val_a", "b": "val_b"}
    result = merge_dict(source, {"a": "val_a_dash", "b": None, "c": "val_c"})
    assert result == {"a": "val_a_dash", "b": "val_b", "c": "val_c"}
    assert merge_dict(source, None) == source
