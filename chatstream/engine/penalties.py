"""Repetition, frequency and presence penalties on a batch of logits.

This module owns the penalty math: `apply_penalties`, one pure function over a [B, V] logits
tensor with per-row values, mode flags and scope flags; `token_counts`, which turns
token-id lists into the [B, V] count tensors it reads; and `penalise`, the sampler's step that
applies every row's `SamplingParams` penalties to a batch. Everything is vectorised over the
vocabulary; the only Python loop is over penalty kinds.

Semantics (c = count of a token in the penalty's scope, l = its logit, p = the row's value):
  multiplicative: only where c > 0, sign-aware: l > 0 -> l / f, l <= 0 -> l * f,
                  with f = p for repetition and presence and f = p ** c for frequency.
  subtractive:    repetition and presence: l - p where c > 0; frequency: l - c * p.
  scope:          "output" counts generated tokens only, "prompt_and_output" adds the prompt.
The penalties compose in the order repetition -> frequency -> presence.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from chatstream.engine.sampling_params import PENALTY_NAMES, SamplingParams


@dataclass(frozen=True)
class RowPenalty:
    """One penalty's settings for every row of a batch; each tensor is [B]."""

    value: torch.Tensor  # float: the row's penalty value (neutral: 1.0 multiplicative, 0.0 subtractive)
    multiplicative: torch.Tensor  # bool: True = multiplicative mode, False = subtractive
    include_prompt: torch.Tensor  # bool: True = scope "prompt_and_output", False = "output"


def token_counts(
    token_ids: Sequence[Sequence[int]],
    vocab_size: int,
    *,
    columns: torch.Tensor | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Count each token id per row: [len(token_ids), vocab_size].

    With `columns` (sorted unique token ids, e.g. from torch.unique) the result is
    [len(token_ids), len(columns)] and counts only those tokens: penalties leave every
    never-seen token alone, so callers can work on the seen columns only.
    Ids outside [0, vocab_size) (or not in `columns`) are ignored: such tokens can never be
    sampled, so there is nothing to penalise.
    """
    width = vocab_size if columns is None else len(columns)
    counts = torch.zeros(len(token_ids), width, dtype=dtype, device=device)
    lengths = [len(ids) for ids in token_ids]
    if sum(lengths) == 0 or width == 0:
        return counts
    flat_ids = torch.tensor(list(itertools.chain.from_iterable(token_ids)), dtype=torch.long, device=counts.device)
    row_ids = torch.repeat_interleave(
        torch.arange(len(token_ids), device=counts.device), torch.tensor(lengths, device=counts.device)
    )
    keep = (flat_ids >= 0) & (flat_ids < vocab_size)
    if columns is not None:
        columns = columns.to(counts.device)
        position = torch.searchsorted(columns, flat_ids).clamp_(max=width - 1)
        keep &= columns[position] == flat_ids
        flat_ids = position
    # One scatter_add over the flattened [B * width] view counts every row at once.
    flat_index = (row_ids * width + flat_ids)[keep]
    counts.view(-1).scatter_add_(0, flat_index, torch.ones_like(flat_index, dtype=dtype))
    return counts


def apply_penalties(
    logits: torch.Tensor,
    prompt_counts: torch.Tensor | None,
    output_counts: torch.Tensor,
    repetition: RowPenalty | None = None,
    frequency: RowPenalty | None = None,
    presence: RowPenalty | None = None,
) -> torch.Tensor:
    """Return a new [B, V] tensor with the three penalties applied to `logits`.

    `prompt_counts` may be None when no row uses scope "prompt_and_output" (it then counts
    as zeros); a penalty given as None is skipped. Rows holding a neutral value come out
    unchanged, so callers may pass whole batches. Expects floating logits (float32 in
    the sampler); -inf logits stay -inf.
    """
    result = logits
    for penalty, is_frequency in ((repetition, False), (frequency, True), (presence, False)):
        if penalty is not None:
            counts = _scoped_counts(prompt_counts, output_counts, penalty.include_prompt)
            result = _apply_one(result, counts, penalty, is_frequency)
    return result


def _scoped_counts(
    prompt_counts: torch.Tensor | None, output_counts: torch.Tensor, include_prompt: torch.Tensor
) -> torch.Tensor:
    if prompt_counts is None or not bool(include_prompt.any()):
        return output_counts
    return output_counts + prompt_counts * include_prompt.to(prompt_counts.dtype)[:, None]


def _apply_one(
    logits: torch.Tensor, counts: torch.Tensor, penalty: RowPenalty, is_frequency: bool
) -> torch.Tensor:
    value = penalty.value.to(logits.dtype)[:, None]
    counts = counts.to(logits.dtype)
    present = counts > 0
    any_multiplicative = bool(penalty.multiplicative.any())
    all_multiplicative = bool(penalty.multiplicative.all())

    multiplied = logits
    if any_multiplicative:
        if is_frequency:
            # p ** c overflows to inf (or underflows to 0) for long outputs; then l * f would
            # turn 0 into nan and l / f would turn a positive logit into +inf. Bounding f by
            # sqrt(max) keeps every product finite for any realistic logit.
            bound = torch.finfo(logits.dtype).max ** 0.5
            factor = torch.pow(value, counts).clamp(min=1.0 / bound, max=bound)
        else:
            factor = value  # broadcasts over the vocabulary
        scaled = torch.where(logits > 0, logits / factor, logits * factor)
        multiplied = torch.where(present, scaled, logits)
        if all_multiplicative:
            return multiplied

    shift = counts * value if is_frequency else present.to(logits.dtype) * value
    subtracted = logits - shift
    if not any_multiplicative:
        return subtracted
    return torch.where(penalty.multiplicative[:, None], multiplied, subtracted)


def penalise(
    logits: torch.Tensor,
    params: Sequence[SamplingParams],
    prompts: Sequence[Sequence[int]],
    outputs: Sequence[Sequence[int]],
) -> torch.Tensor:
    """Logits with each row's penalties applied (row b: `params[b]` over `prompts[b]` and `outputs[b]`).

    Returns `logits` itself when no row has an active penalty, else a new float32 tensor. Penalties
    never touch a token no row has seen, so the math runs on the seen columns only: a few thousand
    instead of the whole vocabulary.
    """
    penalised = [b for b, p in enumerate(params) if p.has_penalties]
    if not penalised:
        return logits
    device, vocab = logits.device, logits.shape[1]
    sub_params = [params[b] for b in penalised]
    kinds = {name: _row_penalty(sub_params, name, device) for name in PENALTY_NAMES}
    # Count only what some active penalty reads: prompts can be long.
    needs_prompt = any(
        p.penalty_is_active(name) and getattr(p, f"{name}_scope") == "prompt_and_output"
        for p in sub_params
        for name in PENALTY_NAMES
    )
    sub_prompts = [prompts[b] if needs_prompt else () for b in penalised]
    sub_outputs = [outputs[b] for b in penalised]
    seen = torch.tensor([t for ids in (*sub_prompts, *sub_outputs) for t in ids], dtype=torch.long, device=device)
    columns = seen[(seen >= 0) & (seen < vocab)].unique()
    if len(columns) == 0:
        return logits
    prompt_counts = token_counts(sub_prompts, vocab, columns=columns, device=device) if needs_prompt else None
    output_counts = token_counts(sub_outputs, vocab, columns=columns, device=device)
    cells = (torch.tensor(penalised, device=device)[:, None], columns[None, :])
    logits = logits.float()
    result = apply_penalties(
        logits[cells],
        prompt_counts,
        output_counts,
        repetition=kinds["repetition_penalty"],
        frequency=kinds["frequency_penalty"],
        presence=kinds["presence_penalty"],
    )
    return logits.index_put(cells, result)  # out of place: the caller's logits stay untouched


def _row_penalty(params: Sequence[SamplingParams], name: str, device: torch.device) -> RowPenalty | None:
    """The [B] tensors of penalty `name`, or None when it is neutral in every row."""
    if not any(p.penalty_is_active(name) for p in params):
        return None
    modes = [getattr(p, f"{name}_mode") for p in params]
    scopes = [getattr(p, f"{name}_scope") for p in params]
    return RowPenalty(
        value=torch.tensor([getattr(p, name) for p in params], dtype=torch.float32, device=device),
        multiplicative=torch.tensor([mode == "multiplicative" for mode in modes], device=device),
        include_prompt=torch.tensor([scope == "prompt_and_output" for scope in scopes], device=device),
    )
