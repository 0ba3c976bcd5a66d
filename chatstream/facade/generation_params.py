"""ChatStream's generation parameters: the original's `params` dict, per-session overrides, and
their translation into the engine's `SamplingParams`.

The constructor's sampling options become `ChatStream.params` with the original's keys
(`temperature`, `top_k_value`, `top_p_value`, ...). A browser session may override some of them
through `/set_generation_params`; the overrides are validated here (a `GenerationParamError`
names the field and its allowed range) and merged over the defaults on every generation of that
session. Unlike the original, a per-session `top_k_value` / `top_p_value` takes effect even when
the server was built without top-k / top-p.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from chatstream.engine.sampling_params import MIN_TOP_P, PENALTY_RANGES, SamplingParams


class GenerationParamError(ValueError):
    """An invalid generation parameter; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class _Range:
    low: float
    high: float
    integer: bool = False
    low_open: bool = False

    def text(self) -> str:
        kind = "an integer" if self.integer else "a number"
        return f"{kind} in {'(' if self.low_open else '['}{self.low}, {self.high}]"

    def check(self, field: str, value: Any) -> float | int:
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        # Compare before converting: an integer beyond float range must fail the range, not overflow.
        in_range = is_number and (isinstance(value, int) or math.isfinite(value)) and self.low <= value <= self.high
        if (not in_range or (self.integer and not float(value).is_integer())
                or (self.low_open and value == self.low)):
            shown = repr(value) if not isinstance(value, int) or abs(value) < 10 ** 30 else "a huge integer"
            raise GenerationParamError(field, f"Invalid {field} value {shown[:60]}: it must be {self.text()}.")
        return int(value) if self.integer else float(value)


# What a session may override, with the allowed ranges (0 disables top-k; 1.0 disables top-p): the
# engine's own (`SamplingParams`) or narrower, so a stored override never fails a generation;
# `check_with_engine` checks the merged values with `SamplingParams` itself as well.
SESSION_PARAM_RANGES: dict[str, _Range] = {
    "temperature": _Range(0.0, 2.0),
    "top_k_value": _Range(0, 1000, integer=True),
    "top_p_value": _Range(MIN_TOP_P, 1.0),
    "max_new_tokens": _Range(1, 32768, integer=True),
    "repetition_penalty": _Range(*PENALTY_RANGES["multiplicative"][:2]),
    "frequency_penalty": _Range(-2.0, 2.0),
    "presence_penalty": _Range(-2.0, 2.0),
}

# The keys the original's API answered with; ours lists them first, then the others.
BASE_SESSION_PARAMS = ("temperature", "top_k_value", "top_p_value")


def build_params(
    *, temperature: float, max_new_tokens: int, context_len: int | None, top_k: int | None, top_p: float | None,
    repetition_penalty: float | None, repetition_penalty_method: str, frequency_penalty: float,
    presence_penalty: float, add_special_tokens: bool | None, seed: int | None, probe_mode_enabled: bool,
) -> dict[str, Any]:
    """The original's `params` dict (plus our two penalties), validated once at construction.

    `context_len` None means the engine's whole `max_model_len`."""
    if repetition_penalty_method not in ("multiplicative", "subtractive"):
        raise ValueError(
            f"repetition_penalty_method must be 'multiplicative' or 'subtractive', got {repetition_penalty_method!r}")
    if context_len is not None and context_len <= max_new_tokens:
        raise ValueError(f"context_len ({context_len}) must be greater than max_new_tokens ({max_new_tokens})")
    params = {
        "temperature": temperature, "max_new_tokens": max_new_tokens, "context_len": context_len,
        "use_top_k_sampling": top_k is not None, "top_k_value": top_k,
        "use_top_p_sampling": top_p is not None, "top_p_value": top_p,
        "use_repetition_penalty": repetition_penalty is not None, "repetition_penalty": repetition_penalty,
        "repetition_penalty_method": repetition_penalty_method,
        "frequency_penalty": frequency_penalty, "presence_penalty": presence_penalty,
        "add_special_tokens": add_special_tokens, "seed": seed, "probe_mode_enabled": probe_mode_enabled,
    }
    to_sampling_params(params, max_tokens=max_new_tokens)  # raises ValueError naming a bad field
    return params


def validate_overrides(body: Any) -> dict[str, Any]:
    """Check a `/set_generation_params` body; returns the overrides to store (None values dropped)."""
    if not isinstance(body, dict):
        raise GenerationParamError("body", "The request body must be a JSON object.")
    unknown = sorted(set(body) - set(SESSION_PARAM_RANGES))
    if unknown:
        raise GenerationParamError(
            unknown[0], f"Unknown generation parameter(s) {unknown}; allowed: {sorted(SESSION_PARAM_RANGES)}.")
    return {k: SESSION_PARAM_RANGES[k].check(k, v) for k, v in body.items() if v is not None}


# SamplingParams' field -> the session parameter that sets it
_SESSION_NAMES = {"top_p": "top_p_value", "top_k": "top_k_value", "max_tokens": "max_new_tokens"}


def check_with_engine(defaults: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Build the engine's `SamplingParams` from `defaults` + `overrides`, so a session can store only
    values the engine accepts (the same ranges as /v1; e.g. a top_p whose float32 value would be 0).
    Raises `GenerationParamError` naming the session parameter."""
    merged = merge_params(defaults, overrides)
    try:
        to_sampling_params(merged, max_tokens=int(merged.get("max_new_tokens") or 1))
    except ValueError as exc:
        message = str(exc)
        engine_field = message.split(" ", 1)[0]
        field = _SESSION_NAMES.get(engine_field, engine_field)
        raise GenerationParamError(field, f"Invalid {field}: {message}") from None


def merge_params(defaults: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    merged = dict(defaults)
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return merged


def public_params(params: dict[str, Any]) -> dict[str, Any]:
    """What `/get_generation_params` shows for the merged `params`: the value in effect of every
    parameter a session may override (the original's three keys first). Settings that are off
    read as their neutral values (top-k 0, top-p 1.0, no repetition penalty), as a client sets them."""
    keys = list(BASE_SESSION_PARAMS) + [k for k in SESSION_PARAM_RANGES if k not in BASE_SESSION_PARAMS]
    shown = {k: params.get(k) for k in keys}
    neutral = {"top_k_value": 0, "top_p_value": 1.0, "frequency_penalty": 0.0, "presence_penalty": 0.0,
               "repetition_penalty": 1.0 if params.get("repetition_penalty_method") != "subtractive" else 0.0}
    return {k: neutral[k] if v is None and k in neutral else v for k, v in shown.items()}


def param_ranges() -> dict[str, dict[str, Any]]:
    """The ranges a session may set, as JSON for clients that validate before they send."""
    return {k: {"min": r.low, "max": r.high, "integer": r.integer, "min_exclusive": r.low_open}
            for k, r in SESSION_PARAM_RANGES.items()}


def to_sampling_params(
    params: dict[str, Any], *, max_tokens: int, stop: list[str] | None = None,
    stop_token_ids: list[int] | None = None,
) -> SamplingParams:
    """The engine's parameters for one generation with the merged `params`."""
    top_k = params.get("top_k_value") or 0
    top_p = params.get("top_p_value")
    method = params.get("repetition_penalty_method", "multiplicative")
    repetition = params.get("repetition_penalty")
    if repetition is None:
        repetition = 1.0 if method == "multiplicative" else 0.0  # the neutral value of the mode
    return SamplingParams(
        max_tokens=max_tokens, temperature=float(params.get("temperature", 1.0)), top_k=int(top_k),
        top_p=1.0 if top_p is None else float(top_p), stop=stop or None, stop_token_ids=stop_token_ids or None,
        repetition_penalty=float(repetition), repetition_penalty_mode=method,
        frequency_penalty=float(params.get("frequency_penalty") or 0.0),
        presence_penalty=float(params.get("presence_penalty") or 0.0),
    )
