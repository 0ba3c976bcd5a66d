"""Reading a JSON request body so that no body can crash a handler: `parse_json`.

Python's `json.loads` accepts things a request must not bring in: nesting deep enough to raise
`RecursionError`, integers of more than 4,300 digits (a `ValueError` outside `JSONDecodeError`),
`NaN` / `Infinity`, numbers that overflow to infinity, and lone UTF-16 surrogates (`"\\ud800"`),
which become Python strings that cannot be encoded, stored or tokenized. `parse_json` refuses
all of them with a `JsonBodyError` whose message names the problem (and, for a bad string, where
it is), so every route answers a 400 instead of a 500 and nothing invalid reaches a session.

Limits: nesting at most `MAX_JSON_DEPTH` levels, number literals at most `MAX_NUMBER_CHARS`
characters. The check walks the parsed value once, so its cost is linear in the body.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_JSON_DEPTH = 32
MAX_NUMBER_CHARS = 64


class JsonBodyError(ValueError):
    """A request body that is not acceptable JSON; `field` is where the problem is (None: the body)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def _parse_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise JsonBodyError(f"the request body holds a number of {len(text)} characters; "
                            f"at most {MAX_NUMBER_CHARS} are allowed")
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise JsonBodyError(f"the request body holds a number of {len(text)} characters; "
                            f"at most {MAX_NUMBER_CHARS} are allowed")
    value = float(text)
    if not math.isfinite(value):
        raise JsonBodyError(f"the request body holds the number {text[:20]}, which is too large")
    return value


def _reject_constant(name: str) -> Any:
    raise JsonBodyError(f"the request body holds {name}, which is not JSON")


def parse_json(body: bytes | str) -> Any:
    """The body's JSON value; raises `JsonBodyError` for anything a handler must not see."""
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonBodyError(f"the request body is not valid UTF-8 (at byte {exc.start})") from None
    else:
        text = body
    if text.startswith("\ufeff"):
        raise JsonBodyError("the request body starts with a byte order mark; send plain UTF-8 JSON")
    try:
        value = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_reject_constant)
    except JsonBodyError:
        raise
    except RecursionError:
        raise JsonBodyError(f"the request body is nested too deeply (at most {MAX_JSON_DEPTH} levels)") from None
    except json.JSONDecodeError as exc:
        raise JsonBodyError(f"the request body is not valid JSON: {exc}") from None
    except ValueError as exc:  # e.g. an integer beyond Python's digit limit
        raise JsonBodyError(f"the request body is not acceptable JSON: {exc}") from None
    check_value(value)
    return value


def check_value(value: Any) -> Any:
    """Return `value` unchanged; refuse nesting beyond `MAX_JSON_DEPTH` and strings that are not valid Unicode (lone surrogates)."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            check_text(item, path or "body")
        elif isinstance(item, (dict, list)):
            if depth >= MAX_JSON_DEPTH:
                raise JsonBodyError(f"the request body is nested too deeply (at most {MAX_JSON_DEPTH} levels)",
                                    path or None)
            if isinstance(item, dict):
                for key, child in item.items():
                    child_path = f"{path}.{key}" if path else str(key)
                    check_text(key, child_path)
                    if isinstance(child, (str, dict, list)):
                        stack.append((child, child_path, depth + 1))
            else:
                for index, child in enumerate(item):
                    if isinstance(child, (str, dict, list)):
                        stack.append((child, f"{path}[{index}]" if path else f"[{index}]", depth + 1))
    return value


def check_text(text: str, field: str) -> None:
    """Raise `JsonBodyError` naming `field` if `text` holds a lone surrogate (it cannot be UTF-8)."""
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start]
        raise JsonBodyError(f"{_short(field)} is not valid Unicode: it holds the lone surrogate "
                            f"\\u{ord(bad):04x} at character {exc.start}", _short(field)) from None


def _short(field: str) -> str:
    # A client-chosen key is echoed back: never a huge one, never one that cannot be UTF-8.
    field = field.encode("utf-8", "backslashreplace").decode("utf-8")
    return field if len(field) <= 100 else field[:97] + "..."
