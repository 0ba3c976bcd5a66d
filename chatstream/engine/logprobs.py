"""Log-probabilities of tokens: what the engine reports for generated and prompt tokens.

This module owns `TokenLogprobs` (one position: the chosen token's log-probability and rank, and
the position's most likely tokens) and `logprobs_of`, the one pure function that computes them
from a batch of logits. The engine calls it only for the rows of requests that asked
(`SamplingParams.logprobs` / `prompt_logprobs`), so other requests pay nothing.

Which logits: by default the model's raw output (vLLM's default): log_softmax of the logits before
any penalty, bias, grammar mask or temperature. With the engine option
`logprobs_mode="processed"` the engine hands in the logits the sampler draws from instead (after
blocked tokens, the grammar mask, logit bias, penalties and temperature; before top-k/top-p/min-p).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class TokenLogprobs:
    """One position: `token_id` (the sampled or given token), its `logprob` and `rank` (1 = the most
    likely token; ties share the better rank), and `top`: the `n` most likely (token id, logprob)
    pairs, best first (empty when n is 0)."""

    token_id: int
    logprob: float
    rank: int
    top: tuple[tuple[int, float], ...] = field(default=())


def logprobs_of(logits: torch.Tensor, token_ids: Sequence[int], num_top: Sequence[int]) -> list[TokenLogprobs]:
    """For each row b of `logits` [B, V]: `token_ids[b]`'s log-probability and rank, and the row's
    `num_top[b]` best tokens. Computed in float32; -inf for a token that cannot occur."""
    if logits.shape[0] != len(token_ids) or len(token_ids) != len(num_top):
        raise ValueError("logits, token_ids and num_top must have one entry per row")
    if not token_ids:
        return []
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    index = torch.tensor(list(token_ids), dtype=torch.long, device=logprobs.device)[:, None]
    chosen = logprobs.gather(1, index)  # [B, 1]
    ranks = (logprobs > chosen).sum(dim=-1).add_(1)
    width = max(num_top)
    top_values = top_ids = None
    if width > 0:
        top_values, top_ids = logprobs.topk(min(width, logprobs.shape[1]), dim=-1)
        top_values, top_ids = top_values.tolist(), top_ids.tolist()
    chosen_list, rank_list = chosen[:, 0].tolist(), ranks.tolist()
    out = []
    for b, token in enumerate(token_ids):
        top: tuple[tuple[int, float], ...] = ()
        if num_top[b] > 0 and top_ids is not None and top_values is not None:
            top = tuple(zip(top_ids[b][: num_top[b]], top_values[b][: num_top[b]]))
        out.append(TokenLogprobs(int(token), chosen_list[b], int(rank_list[b]), top))
    return out
