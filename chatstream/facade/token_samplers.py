"""The original's token-sampler presets, on our sampler.

`TokenSamplerHft` ("like HuggingFace transformers": penalty -> temperature -> top-k -> top-p ->
sample) is the order our engine's `Sampler` always uses, and `TokenSamplerIsok` ("isolated
top-k": penalty -> temperature -> sample among the top-k only, no top-p). Passed to
`ChatStream(token_sampler=...)`, a preset adjusts each request's `SamplingParams`
(`engine_params`); the engine then samples the whole batch at once. `do_sample(logits, ...)`
samples one token from one logits vector with the original's arguments, for code that called it
directly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from chatstream.engine.sampling_params import SamplingParams


class TokenSamplerHft:
    """penalty -> temperature -> top-k -> top-p -> sample (temperature below 1e-4: greedy)."""

    uses_top_p = True

    def engine_params(self, params: SamplingParams) -> SamplingParams:
        return params if self.uses_top_p else dataclasses.replace(params, top_p=1.0)

    def do_sample(self, logits: Any, top_k: int | None = None, top_p: float | None = None,
                  temperature: float = 1.0, past_tokens: Sequence[int] | None = None, penalty: float | None = None,
                  penalty_method: str = "multiplicative") -> int:
        """One token id from a `[V]` (or `[1, V]`) logits tensor, with the original's arguments."""
        from chatstream.engine.sampler import Sampler, SamplingRow

        row = logits.reshape(1, -1).float()
        method = penalty_method or "multiplicative"
        params = SamplingParams(
            max_tokens=1, temperature=0.0 if temperature < 1e-4 else float(temperature), top_k=int(top_k or 0),
            top_p=float(top_p) if top_p is not None and 0 < top_p < 1 else 1.0,
            repetition_penalty=float(penalty) if penalty is not None else (1.0 if method == "multiplicative" else 0.0),
            repetition_penalty_mode=method, repetition_penalty_scope="prompt_and_output")
        params = self.engine_params(params)
        # The past tokens count as the prompt, so the penalty (scope prompt_and_output) sees them all.
        sample = Sampler(row.shape[-1])(row, [SamplingRow(params, list(past_tokens or []), [])])
        return int(sample[0])


class TokenSamplerIsok(TokenSamplerHft):
    """penalty -> temperature -> sample among the top-k tokens only (top-p is not used)."""

    uses_top_p = False
