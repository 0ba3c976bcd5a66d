"""Next-token selection for one engine step.

This module owns `SamplingRow` (what the sampler needs to know about one sequence this step)
and `Sampler`, which turns a [B, V] logits tensor into one token id per row by running the pure
steps of `sampling_steps.py` and `penalties.py` in its documented order. It also owns the
randomness: the generators and the per-row noise. Fast paths skip whatever no row in the batch
asked for, since this runs on every step of the engine.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from chatstream.engine.penalties import penalise
from chatstream.engine.sampling_params import SamplingParams
from chatstream.engine.sampling_steps import (
    Candidates,
    apply_logit_bias,
    apply_min_p,
    apply_temperature,
    apply_token_bitmask,
    apply_top_k,
    apply_top_p,
    block_tokens,
    draw,
    draw_lengths,
    drop_non_finite,
    greedy_tokens,
    rank_candidates,
)

# Below this temperature, logits / temperature can overflow float32 and the softmax turns
# into nan; such rows are sampled as greedy, which is what they converge to anyway.
_MIN_TEMPERATURE = 1e-5

# How many best tokens top-p looks at before ranking the whole vocabulary: a partial topk is
# ~10x cheaper than a full sort, and at temperature <= 1 the top-p set is nearly always smaller.
_TOP_P_SHORTLIST = 1024

# The token of a row that has nothing to choose from (no finite logit at all).
NO_TOKEN = -1


@dataclass(frozen=True)
class SamplingRow:
    """One sequence of the batch, as the sampler sees it this step."""

    params: SamplingParams
    prompt_token_ids: Sequence[int]
    output_token_ids: Sequence[int]
    blocked_token_ids: Sequence[int] = ()  # forbidden this step (EOS/stop ids while output < min_tokens)
    token_bitmask: torch.Tensor | None = None  # int32 [ceil(V/32)]: the tokens its grammar allows this step


def row_seed(seed: int, num_output_tokens: int) -> int:
    """The generator seed for a seeded row's draw at this output length.

    Hashing (rather than e.g. seed + length) keeps the streams of neighbouring seeds and
    steps unrelated, and is stable across processes, unlike hash().
    """
    digest = hashlib.blake2b(f"{seed}:{num_output_tokens}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class Sampler:
    """Picks the next token for every row of a batch.

    Order of steps, per row (one call each, in `__call__` and `_sample`):
      1. blocked tokens: `blocked_token_ids` (and logits columns beyond `vocab_size`) are
         never chosen (-inf); then the grammar: tokens the row's `token_bitmask` does not
         allow are -inf; then `params.logit_bias` is added.         block_tokens,
                                                                    apply_token_bitmask, apply_logit_bias
      2. penalties: repetition -> frequency -> presence.            penalise
      3. temperature: logits / temperature; rows with temperature 0 (or below 1e-5) take
         the argmax here and skip the remaining steps.              greedy_tokens, apply_temperature
      4. top-k: keep the k best tokens (k clamped to the vocab; ties broken by rank). The
         rows' best tokens are ranked first, as many as top-k and top-p can keep.
                                                                    rank_candidates, apply_top_k
      5. top-p: keep the smallest set of most likely tokens whose probability reaches
         top_p; the token that crosses the threshold is kept.      apply_top_p
      6. min-p: keep tokens with probability >= min_p * (probability of the top token).
                                                                    apply_min_p
      7. draw: exponential race, argmax(probs / q) with q ~ Exp(1) drawn per row over the
         row's kept tokens.                                         draw
    `adjusted_logits` runs steps 1 to 3 alone: the distribution the engine reports log-probs of in
    its "processed" mode.

    Degenerate rows: NaN counts as -inf and +inf as the largest float, so neither reaches a
    choice; every filter keeps at least the row's top token; a row with no finite logit at all
    gets `NO_TOKEN` (-1), which the engine turns into that request's error.

    Randomness: a row with `params.seed` draws its noise from a generator seeded with
    `row_seed(seed, len(output_token_ids))`, so its token depends only on its own logits,
    settings and output length, not on the rest of the batch, its position, or preemption
    (for a given device type: CPU and CUDA generators produce different streams).
    Unseeded rows share `self.generator`, which starts from OS entropy.
    """

    def __init__(self, vocab_size: int) -> None:
        if vocab_size < 1:
            raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
        self.vocab_size = vocab_size
        self.generator = torch.Generator()
        self.generator.seed()
        self._device_generators: dict[torch.device, torch.Generator] = {}

    def __call__(self, logits: torch.Tensor, rows: Sequence[SamplingRow]) -> torch.Tensor:
        """Return the next token of every row: [B] long on `logits.device` (`NO_TOKEN` where none)."""
        logits = self._steps_1_2(logits, rows)
        greedy = [row.params.temperature < _MIN_TEMPERATURE for row in rows]
        if all(greedy):
            return _greedy(logits)  # 3, greedy
        parts = []
        for subset, group in self._groups(rows, greedy):
            part = logits if subset is None else logits[torch.tensor(subset, device=logits.device)]
            parts.append((subset, _greedy(part) if group is None else self._sample(part, group)))  # 3 | 3-7
        return _assemble(len(rows), parts)

    def adjusted_logits(self, logits: torch.Tensor, rows: Sequence[SamplingRow]) -> torch.Tensor:
        """[B, vocab_size] float32: the logits after steps 1 to 3 (greedy rows: after 1 and 2)."""
        logits = self._steps_1_2(logits, rows).float()
        temperature = [row.params.temperature for row in rows]
        if all(t < _MIN_TEMPERATURE or t == 1.0 for t in temperature):
            return logits
        scale = torch.tensor([t if t >= _MIN_TEMPERATURE else 1.0 for t in temperature], device=logits.device)
        return logits / scale[:, None]

    def _steps_1_2(self, logits: torch.Tensor, rows: Sequence[SamplingRow]) -> torch.Tensor:
        if logits.dim() != 2 or logits.shape[0] != len(rows):
            raise ValueError(f"logits must be [{len(rows)}, V], got {list(logits.shape)}")
        if logits.shape[1] < self.vocab_size:
            raise ValueError(f"logits have {logits.shape[1]} columns, fewer than vocab_size={self.vocab_size}")
        # Columns past vocab_size are padding of the model's output layer: drop them (a view).
        logits = logits[:, : self.vocab_size]
        logits = block_tokens(logits, [row.blocked_token_ids for row in rows])  # 1
        logits = apply_token_bitmask(logits, [row.token_bitmask for row in rows])  # 1, grammar
        logits = apply_logit_bias(logits, [row.params.logit_bias for row in rows])  # 1, bias
        return penalise(logits, [row.params for row in rows], [row.prompt_token_ids for row in rows],
                        [row.output_token_ids for row in rows])  # 2

    def _sample(self, logits: torch.Tensor, rows: Sequence[SamplingRow]) -> torch.Tensor:
        """Steps 3 to 7, for rows that draw."""
        logits = apply_temperature(logits, [row.params.temperature for row in rows])  # 3
        # 4: each row's best tokens, as many as top-k and top-p can keep; NaN and inf are kept out
        # here, after temperature, which can overflow a huge logit. Usually one table; rows whose
        # top-p set outgrows the shortlist get a second, full one.
        tables = rank_candidates(logits, [row.params.top_k for row in rows], [row.params.top_p for row in rows],
                                 _TOP_P_SHORTLIST)
        parts = []
        for subset, candidates in tables:
            part = rows if subset is None else [rows[i] for i in subset]
            candidates = apply_top_k(candidates, [row.params.top_k for row in part])  # 4
            candidates = apply_top_p(candidates, [row.params.top_p for row in part])  # 5
            candidates = apply_min_p(candidates, [row.params.min_p for row in part])  # 6
            tokens = draw(candidates, self._noise(part, candidates))  # 7
            parts.append((subset, _only_sampleable(tokens, candidates.sampleable)))
        return _assemble(len(rows), parts)

    def _groups(
        self, rows: Sequence[SamplingRow], greedy: Sequence[bool]
    ) -> list[tuple[list[int] | None, list[SamplingRow] | None]]:
        """The batch split into greedy rows (group None), rows that draw among ranked tokens and
        rows that draw over the whole vocabulary, each with its row numbers (None: the whole batch).

        Ranking costs a partial sort, so rows that filter nothing never pay for it, and a batch of
        one kind is not split at all."""
        vocab = self.vocab_size
        kinds = ["greedy" if g else "ranked" if (0 < row.params.top_k < vocab or row.params.top_p < 1.0)
                 else "whole" for row, g in zip(rows, greedy)]
        groups: list[tuple[list[int] | None, list[SamplingRow] | None]] = []
        for kind in ("greedy", "ranked", "whole"):
            picked = [i for i, k in enumerate(kinds) if k == kind]
            if picked:
                subset = None if len(picked) == len(rows) else picked
                groups.append((subset, None if kind == "greedy" else [rows[i] for i in picked]))
        return groups

    def _noise(self, rows: Sequence[SamplingRow], candidates: Candidates) -> torch.Tensor:
        """[B, width] Exp(1) draws; a seeded row draws exactly as many as it has kept tokens, from its
        own generator.

        Drawing a length that depends only on the row keeps seeded draws independent of the
        batch; positions past a row's length have zero weight, so any positive value does there.
        """
        lengths, width = draw_lengths(candidates)
        device = candidates.logits.device
        noise = torch.empty((len(rows), width), device=device)
        unseeded = [i for i, row in enumerate(rows) if row.params.seed is None]
        shared = self._shared_generator(device)
        if len(unseeded) == len(rows):
            _fill_exponential(noise, shared)
        elif unseeded:
            block = torch.empty((len(unseeded), width), device=device)
            noise[torch.tensor(unseeded, device=device)] = _fill_exponential(block, shared)
        for i, row in enumerate(rows):
            if row.params.seed is not None:
                seed = row_seed(row.params.seed, len(row.output_token_ids))
                generator = torch.Generator(device=device).manual_seed(seed)
                _fill_exponential(noise[i, : lengths[i]], generator)
                noise[i, lengths[i]:] = 1.0
        return noise

    def _shared_generator(self, device: torch.device) -> torch.Generator:
        if device.type == "cpu":
            return self.generator
        if device not in self._device_generators:
            seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
            self._device_generators[device] = torch.Generator(device=device).manual_seed(seed)
        return self._device_generators[device]


def _greedy(logits: torch.Tensor) -> torch.Tensor:
    tokens, top = greedy_tokens(logits)
    if math.isfinite(float(top.sum())):  # NaN and inf carry into the sum
        return tokens  # the usual case: one pass
    logits, _, sampleable = drop_non_finite(logits, top)
    return _only_sampleable(greedy_tokens(logits)[0], sampleable)


def _only_sampleable(tokens: torch.Tensor, sampleable: torch.Tensor | None) -> torch.Tensor:
    return tokens if sampleable is None else tokens.masked_fill(~sampleable, NO_TOKEN)


def _assemble(num_rows: int, parts: Sequence[tuple[list[int] | None, torch.Tensor]]) -> torch.Tensor:
    """One [num_rows] tensor from the tokens of disjoint row subsets (subset None: all rows)."""
    if len(parts) == 1 and parts[0][0] is None:
        return parts[0][1]
    tokens = torch.empty(num_rows, dtype=torch.long, device=parts[0][1].device)
    for subset, picked in parts:
        tokens[torch.tensor(subset, device=tokens.device)] = picked
    return tokens


def _fill_exponential(out: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Fill `out` in place with Exp(1) draws, as -log(U) with U ~ Uniform[0, 1).

    Never 0 (U < 1), so probs / q stays finite; U == 0 gives q = inf, i.e. weight 0.
    """
    return out.uniform_(generator=generator).log_().neg_()
