"""Per-request sampling settings.

This module owns `SamplingParams`: the one flat dataclass a caller fills in to say how a
completion is sampled and when it stops, together with its validation. Invalid values are
rejected up front (ValueError naming the field and the allowed range) so that the engine
never meets them mid-batch, and list-like fields are normalised to plain lists.

The ranges are those where the sampler's float32 math stays finite and a request's cost stays
bounded (the README's sampling-parameters table lists them): e.g. a top_p of 1e-300 is 0 in
float32 and a multiplicative penalty of 1e-300 divides by 0, so both are refused here; stop
strings are limited in number and length because the engine matches them for every token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from chatstream.engine.structured_output import StructuredOutput

PenaltyMode = Literal["multiplicative", "subtractive"]
PenaltyScope = Literal["prompt_and_output", "output"]

PENALTY_MODES: tuple[str, ...] = ("multiplicative", "subtractive")
PENALTY_SCOPES: tuple[str, ...] = ("prompt_and_output", "output")
PENALTY_NAMES: tuple[str, ...] = ("repetition_penalty", "frequency_penalty", "presence_penalty")

# The value that leaves logits untouched, per mode.
NEUTRAL_PENALTY: dict[str, float] = {"multiplicative": 1.0, "subtractive": 0.0}

# Allowed penalty values per mode, as (low, high, text for messages). A multiplicative factor
# near 0 would divide logits by 0 in float32; 1/100 already makes a seen token all but banned.
PENALTY_RANGES: dict[str, tuple[float, float, str]] = {
    "multiplicative": (0.01, 10.0, "[0.01, 10]"),
    "subtractive": (-2.0, 2.0, "[-2, 2]"),
}
# Beyond 100 every distribution is flat already; the bound keeps logits / temperature finite.
MAX_TEMPERATURE = 100.0
# Any top_p below the top token's probability keeps that token alone, and with vocabularies under
# 10^9 tokens 1e-9 is below it; smaller values would only risk rounding to 0 in float32.
MIN_TOP_P = 1e-9
# Seeds are hashed with the output length into a 64-bit generator seed.
SEED_RANGE = (-(2**63), 2**64 - 1)
# The engine matches stop strings on every new character: their number and length are the cost.
MAX_STOP_STRINGS = 32
MAX_STOP_STRING_CHARS = 1024
MAX_STOP_TOKEN_IDS = 1024
# Log-probabilities: the most likely tokens reported per position, as OpenAI's top_logprobs allows.
MAX_LOGPROBS = 20
# OpenAI's logit_bias range; its entries are added to the logits on every step.
LOGIT_BIAS_RANGE = (-100.0, 100.0)
MAX_LOGIT_BIAS_ENTRIES = 2048


def _is_int(value: object) -> bool:
    # bool is an int subclass, but top_k=True is a caller bug, not a number.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    # An int is finite however long (and compares exactly with the float bounds); only floats can be
    # nan or inf. math.isfinite would overflow on an int beyond float range.
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


@dataclass
class SamplingParams:
    """How to sample one completion and when to stop it.

    Penalty semantics (c(t) = count of token t in the scope's tokens, l = its logit):
    multiplicative with value p touches only tokens with c(t) > 0 and is sign-aware
    (l > 0 -> l / f, l <= 0 -> l * f) with f = p for repetition and presence and
    f = p ** c(t) for frequency; subtractive with value p gives l - p where c(t) > 0 for
    repetition and presence and l - c(t) * p for frequency. Scope "output" counts only
    generated tokens, "prompt_and_output" counts prompt and generated tokens.
    """

    max_tokens: int | None = 256
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    seed: int | None = None
    stop: list[str] | str | None = None
    stop_token_ids: list[int] | None = None
    ignore_eos: bool = False
    min_tokens: int = 0
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty_mode: PenaltyMode = "multiplicative"
    repetition_penalty_scope: PenaltyScope = "prompt_and_output"
    frequency_penalty_mode: PenaltyMode = "subtractive"
    frequency_penalty_scope: PenaltyScope = "output"
    presence_penalty_mode: PenaltyMode = "subtractive"
    presence_penalty_scope: PenaltyScope = "output"
    skip_special_tokens: bool = True
    include_stop_str_in_output: bool = False
    # None: no log-probabilities; n >= 0: the chosen token's, plus the n most likely tokens per position.
    logprobs: int | None = None
    prompt_logprobs: int | None = None  # the same for every prompt token after the first
    logit_bias: dict[int, float] | None = None  # token id -> value added to its logit
    structured_output: StructuredOutput | None = None  # the grammar the output must match

    def __post_init__(self) -> None:
        self._validate_lengths()
        self._validate_outputs()
        self._validate_sampling()
        for name in PENALTY_NAMES:
            self._validate_penalty(name)
        for name in ("ignore_eos", "skip_special_tokens", "include_stop_str_in_output"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {_short_repr(getattr(self, name))}")
        self.stop = _normalise_stop(self.stop)
        self.stop_token_ids = _normalise_stop_token_ids(self.stop_token_ids)

    @property
    def is_greedy(self) -> bool:
        """True when the next token is the argmax (temperature 0)."""
        return self.temperature == 0

    @property
    def has_penalties(self) -> bool:
        """True when any penalty differs from its mode's neutral value."""
        return any(self.penalty_is_active(name) for name in PENALTY_NAMES)

    def penalty_is_active(self, name: str) -> bool:
        """True when penalty `name` (e.g. "frequency_penalty") changes logits."""
        mode = getattr(self, f"{name}_mode")
        return getattr(self, name) != NEUTRAL_PENALTY[mode]

    def _validate_lengths(self) -> None:
        if self.max_tokens is not None and not (_is_int(self.max_tokens) and self.max_tokens >= 1):
            raise ValueError(f"max_tokens must be an integer >= 1 or None, got {_short_repr(self.max_tokens)}")
        if not (_is_int(self.min_tokens) and self.min_tokens >= 0):
            raise ValueError(f"min_tokens must be an integer >= 0, got {_short_repr(self.min_tokens)}")
        if self.max_tokens is not None and self.min_tokens > self.max_tokens:
            raise ValueError(
                f"min_tokens must be in [0, max_tokens={self.max_tokens}], got {_short_repr(self.min_tokens)}"
            )

    def _validate_outputs(self) -> None:
        for name in ("logprobs", "prompt_logprobs"):
            value = getattr(self, name)
            if value is not None and not (_is_int(value) and 0 <= value <= MAX_LOGPROBS):
                raise ValueError(f"{name} must be None or an integer in [0, {MAX_LOGPROBS}], got {_short_repr(value)}")
        self.logit_bias = _normalise_logit_bias(self.logit_bias)
        if self.structured_output is not None and not isinstance(self.structured_output, StructuredOutput):
            raise ValueError(f"structured_output must be a StructuredOutput or None, "
                             f"got {_short_repr(self.structured_output)}")

    def _validate_sampling(self) -> None:
        if not (_is_real(self.temperature) and 0 <= self.temperature <= MAX_TEMPERATURE):
            raise ValueError(
                f"temperature must be in [0, {MAX_TEMPERATURE:g}] (0 = greedy), got {_short_repr(self.temperature)}")
        if not (_is_int(self.top_k) and self.top_k >= -1):
            raise ValueError(f"top_k must be 0 or -1 (disabled) or an integer >= 1, got {_short_repr(self.top_k)}")
        if not (_is_real(self.top_p) and MIN_TOP_P <= self.top_p <= 1):
            raise ValueError(f"top_p must be in [{MIN_TOP_P:g}, 1], got {_short_repr(self.top_p)}")
        if not (_is_real(self.min_p) and 0 <= self.min_p <= 1):
            raise ValueError(f"min_p must be in [0, 1], got {_short_repr(self.min_p)}")
        if self.seed is not None and not (_is_int(self.seed) and SEED_RANGE[0] <= self.seed <= SEED_RANGE[1]):
            raise ValueError(
                f"seed must be None or an integer in [-2**63, 2**64 - 1], got {_short_repr(self.seed)}")
        self.temperature = float(self.temperature)
        self.top_p = float(self.top_p)
        self.min_p = float(self.min_p)

    def _validate_penalty(self, name: str) -> None:
        for suffix, allowed in (("mode", PENALTY_MODES), ("scope", PENALTY_SCOPES)):
            field_name = f"{name}_{suffix}"
            value = getattr(self, field_name)
            if value not in allowed:
                choices = ", ".join(repr(choice) for choice in allowed)
                raise ValueError(f"{field_name} must be one of {choices}, got {_short_repr(value)}")
            # str-Enum members compare equal to their value; store the plain string.
            setattr(self, field_name, allowed[allowed.index(value)])
        mode = getattr(self, f"{name}_mode")
        value = getattr(self, name)
        low, high, text = PENALTY_RANGES[mode]
        if not (_is_real(value) and low <= value <= high):
            raise ValueError(f"{name} must be in {text} when {name}_mode is {mode!r}, got {_short_repr(value)}")
        setattr(self, name, float(value))


def _short_repr(value: object, limit: int = 80) -> str:
    # A rejected value is echoed in the message; a 40,000-character one must not be.
    try:
        text = repr(value)
    except ValueError:  # e.g. an int too long to convert to decimal
        return f"a {type(value).__name__} too large to print"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _normalise_stop(stop: list[str] | str | None) -> list[str]:
    if stop is None:
        return []
    items = [stop] if isinstance(stop, str) else stop
    if not isinstance(items, (list, tuple)) or not all(isinstance(item, str) for item in items):
        raise ValueError(f"stop must be a string or a list of strings, got {_short_repr(stop)}")
    if len(items) > MAX_STOP_STRINGS:
        raise ValueError(f"stop must hold at most {MAX_STOP_STRINGS} strings, got {len(items)}")
    # An empty stop string would match before any text is produced.
    if any(item == "" for item in items):
        raise ValueError(f"stop must contain only non-empty strings, got {_short_repr(stop)}")
    longest = max(range(len(items)), key=lambda i: len(items[i]), default=None)
    if longest is not None and len(items[longest]) > MAX_STOP_STRING_CHARS:
        raise ValueError(f"stop strings must be at most {MAX_STOP_STRING_CHARS} characters each, "
                         f"got {len(items[longest])} in stop string {longest}")
    return list(items)


def _normalise_stop_token_ids(stop_token_ids: list[int] | None) -> list[int]:
    if stop_token_ids is None:
        return []
    if not isinstance(stop_token_ids, (list, tuple)) or not all(
        _is_int(token) and token >= 0 for token in stop_token_ids
    ):
        raise ValueError(
            f"stop_token_ids must be a list of integers >= 0, got {_short_repr(stop_token_ids)}"
        )
    if len(stop_token_ids) > MAX_STOP_TOKEN_IDS:
        raise ValueError(f"stop_token_ids must hold at most {MAX_STOP_TOKEN_IDS} ids, got {len(stop_token_ids)}")
    return list(stop_token_ids)


def _normalise_logit_bias(bias: dict[int, float] | None) -> dict[int, float] | None:
    if bias is None:
        return None
    if not isinstance(bias, dict):
        raise ValueError(f"logit_bias must be a mapping of token ids to numbers, got {_short_repr(bias)}")
    if len(bias) > MAX_LOGIT_BIAS_ENTRIES:
        raise ValueError(f"logit_bias must hold at most {MAX_LOGIT_BIAS_ENTRIES} entries, got {len(bias)}")
    low, high = LOGIT_BIAS_RANGE
    for token, value in bias.items():
        if not (_is_int(token) and token >= 0):
            raise ValueError(f"logit_bias keys must be token ids (integers >= 0), got {_short_repr(token)}")
        if not (_is_real(value) and low <= value <= high):
            raise ValueError(f"logit_bias values must be in [{low:g}, {high:g}], got {_short_repr(value)} "
                             f"for token {token}")
    return {int(token): float(value) for token, value in bias.items()} or None
