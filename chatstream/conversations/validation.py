"""Checks on what callers hand the store (texts, titles, session data, feedback, stats, token ids).

Every check raises `ValidationFailed` naming the field, so the HTTP layer can answer 400 with it.
Limits are generous sanity bounds that keep one record from swamping a shared store, not model
limits (the engine checks those).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence

from chatstream.conversations.errors import ValidationFailed
from chatstream.conversations.models import Feedback, JsonScalar, ReplyStats, TurnTokens

MAX_TEXT_CHARS = 1_000_000
MAX_TITLE_CHARS = 200
MAX_SHORT_CHARS = 64  # finish reasons, client roles, generation-parameter names
MAX_MODEL_ID_CHARS = 512
MAX_GENERATION_PARAMS = 32
MAX_FORM_DATA_BYTES = 16_384
MAX_TOKEN_IDS = 4_000_000
TOKEN_ID_LIMIT = 2**32  # stored as unsigned 32-bit


def check_text(value: object, field: str, *, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise ValidationFailed.one(field, f"must be a string, got {type(value).__name__}")
    if len(value) > MAX_TEXT_CHARS:
        raise ValidationFailed.one(field, f"must be at most {MAX_TEXT_CHARS} characters, got {len(value)}")
    if not allow_empty and not value.strip():
        raise ValidationFailed.one(field, "must not be empty")
    return value


def check_title(value: object) -> str:
    if not isinstance(value, str):
        raise ValidationFailed.one("title", f"must be a string, got {type(value).__name__}")
    if len(value) > MAX_TITLE_CHARS:
        raise ValidationFailed.one("title", f"must be at most {MAX_TITLE_CHARS} characters, got {len(value)}")
    return value


def check_short(value: object, field: str, *, optional: bool = True) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_SHORT_CHARS:
        raise ValidationFailed.one(field, f"must be a string of 1 to {MAX_SHORT_CHARS} characters, got {value!r}")
    return value


def check_limit(value: object, maximum: int = 100) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ValidationFailed.one("limit", f"must be an integer from 1 to {maximum}, got {value!r}")
    return value


def check_generation_params(value: object) -> dict[str, JsonScalar]:
    if not isinstance(value, Mapping):
        raise ValidationFailed.one("generation_params", f"must be an object, got {type(value).__name__}")
    if len(value) > MAX_GENERATION_PARAMS:
        raise ValidationFailed.one("generation_params", f"must have at most {MAX_GENERATION_PARAMS} entries")
    checked: dict[str, JsonScalar] = {}
    for key, item in value.items():
        check_short(key, "generation_params", optional=False)
        if isinstance(item, float) and not math.isfinite(item):
            raise ValidationFailed.one(f"generation_params.{key}", f"must be a finite number, got {item!r}")
        if isinstance(item, str) and len(item) > 256:
            raise ValidationFailed.one(f"generation_params.{key}", "must be at most 256 characters")
        if item is not None and not isinstance(item, (str, int, float, bool)):
            raise ValidationFailed.one(f"generation_params.{key}",
                                       f"must be a string, number, boolean or null, got {type(item).__name__}")
        checked[str(key)] = item
    return checked


def check_feedback(value: object) -> Feedback | None:
    if value is None:
        return None
    if not isinstance(value, Feedback):
        raise ValidationFailed.one("feedback", f"must be a Feedback or None, got {type(value).__name__}")
    if not isinstance(value.is_like, bool):
        raise ValidationFailed.one("feedback.is_like", f"must be a boolean, got {value.is_like!r}")
    try:
        encoded = json.dumps(value.form_data, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationFailed.one("feedback.form_data", f"must be JSON data: {exc}") from None
    if len(encoded.encode()) > MAX_FORM_DATA_BYTES:
        raise ValidationFailed.one("feedback.form_data", f"must be at most {MAX_FORM_DATA_BYTES} bytes as JSON")
    return value


def check_stats(value: object) -> ReplyStats | None:
    if value is None:
        return None
    if not isinstance(value, ReplyStats):
        raise ValidationFailed.one("stats", f"must be ReplyStats or None, got {type(value).__name__}")
    for name in ("prompt_tokens", "cached_tokens", "completion_tokens"):
        item = getattr(value, name)
        if item is not None and (isinstance(item, bool) or not isinstance(item, int) or item < 0):
            raise ValidationFailed.one(f"stats.{name}", f"must be a non-negative integer or None, got {item!r}")
    for name in ("time_to_first_token_s", "tokens_per_s"):
        item = getattr(value, name)
        if item is not None and (isinstance(item, bool) or not isinstance(item, (int, float))
                                 or not math.isfinite(item) or item < 0):
            raise ValidationFailed.one(f"stats.{name}", f"must be a non-negative number or None, got {item!r}")
    return value


def _check_token_ids(ids: Sequence[int], field: str) -> tuple[int, ...]:
    if not isinstance(ids, (tuple, list)):
        raise ValidationFailed.one(field, f"must be a list of integers, got {type(ids).__name__}")
    if len(ids) > MAX_TOKEN_IDS:
        raise ValidationFailed.one(field, f"must have at most {MAX_TOKEN_IDS} ids")
    for i, token_id in enumerate(ids):
        if isinstance(token_id, bool) or not isinstance(token_id, int) or not 0 <= token_id < TOKEN_ID_LIMIT:
            raise ValidationFailed.one(f"{field}[{i}]", f"must be an integer from 0 to {TOKEN_ID_LIMIT - 1}, "
                                                        f"got {token_id!r}")
    return tuple(ids)


def check_tokens(value: object) -> TurnTokens | None:
    if value is None:
        return None
    if not isinstance(value, TurnTokens):
        raise ValidationFailed.one("tokens", f"must be TurnTokens or None, got {type(value).__name__}")
    if not isinstance(value.model_id, str) or not value.model_id or len(value.model_id) > MAX_MODEL_ID_CHARS:
        raise ValidationFailed.one("tokens.model_id", f"must be a string of 1 to {MAX_MODEL_ID_CHARS} characters")
    return TurnTokens(value.model_id, _check_token_ids(value.prompt_token_ids, "tokens.prompt_token_ids"),
                      _check_token_ids(value.output_token_ids, "tokens.output_token_ids"))
