"""Next-token selection for one engine step.

This module owns `SamplingRow` (what the sampler needs to know about one sequence this step)
and `Sampler`, which turns a [B, V] logits tensor into one token id per row. Per-row settings
become [B] tensors so every step is a handful of batched tensor ops; fast paths skip whatever
no row in the batch asked for, since this runs on every step of the engine.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from chatstream.engine.penalties import RowPenalty, apply_penalties, token_counts
from chatstream.engine.sampling_params import PENALTY_NAMES, SamplingParams

# Below this temperature, logits / temperature can overflow float32 and the softmax turns
# into nan; such rows are sampled as greedy, which is what they converge to anyway.
_MIN_TEMPERATURE = 1e-5

# How many best tokens top-p looks at before ranking the whole vocabulary: a partial topk is
# ~10x cheaper than a full sort, and at temperature <= 1 the top-p set is nearly always smaller.
_TOP_P_SHORTLIST = 1024


@dataclass(frozen=True)
class SamplingRow:
    """One sequence of the batch, as the sampler sees it this step."""

    params: SamplingParams
    prompt_token_ids: Sequence[int]
    output_token_ids: Sequence[int]
    blocked_token_ids: Sequence[int] = ()  # forbidden this step (EOS/stop ids while output < min_tokens)


def row_seed(seed: int, num_output_tokens: int) -> int:
    """The generator seed for a seeded row's draw at this output length.

    Hashing (rather than e.g. seed + length) keeps the streams of neighbouring seeds and
    steps unrelated, and is stable across processes, unlike hash().
    """
    digest = hashlib.blake2b(f"{seed}:{num_output_tokens}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class Sampler:
    """Picks the next token for every row of a batch.

    Order of steps, per row:
      1. blocked tokens: `blocked_token_ids` (and logits columns beyond `vocab_size`) are
         never chosen (-inf).
      2. penalties: repetition -> frequency -> presence (`penalties.apply_penalties`).
      3. temperature: logits / temperature; rows with temperature 0 (or below 1e-5) take
         the argmax here and skip the remaining steps.
      4. top-k: keep the k best tokens (k clamped to the vocab; ties broken by rank).
      5. top-p: keep the smallest set of most likely tokens whose probability reaches
         top_p; the token that crosses the threshold is kept, so at least one survives.
      6. min-p: keep tokens with probability >= min_p * (probability of the top token).
      7. sample: exponential race, argmax(probs / q) with q ~ Exp(1) drawn per row
         (over each row's kept tokens only, when top-k/top-p limit them).

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
        """Return the next token of every row: [B] long on `logits.device`."""
        if logits.dim() != 2 or logits.shape[0] != len(rows):
            raise ValueError(f"logits must be [{len(rows)}, V], got {list(logits.shape)}")
        if logits.shape[1] < self.vocab_size:
            raise ValueError(f"logits have {logits.shape[1]} columns, fewer than vocab_size={self.vocab_size}")
        # Columns past vocab_size are padding of the model's output layer: drop them (a view).
        logits = logits[:, : self.vocab_size]
        logits = self._block(logits, rows)
        logits = self._penalise(logits, rows)

        greedy = [row.params.temperature < _MIN_TEMPERATURE for row in rows]
        return _split(logits, rows, greedy, lambda greedy_logits, _: greedy_logits.argmax(dim=-1), self._sample)

    def _block(self, logits: torch.Tensor, rows: Sequence[SamplingRow]) -> torch.Tensor:
        vocab = logits.shape[1]
        # Ids outside the vocab can never be sampled, so there is nothing to block.
        pairs = [(i, t) for i, row in enumerate(rows) for t in row.blocked_token_ids if 0 <= t < vocab]
        if not pairs:
            return logits
        row_index, token_index = torch.tensor(pairs, device=logits.device).unbind(dim=1)
        minus_inf = torch.tensor(-math.inf, dtype=logits.dtype, device=logits.device)
        return logits.index_put((row_index, token_index), minus_inf)  # out of place: caller's logits untouched

    def _penalise(self, logits: torch.Tensor, rows: Sequence[SamplingRow]) -> torch.Tensor:
        penalised = [i for i, row in enumerate(rows) if row.params.has_penalties]
        if not penalised:
            return logits
        device, vocab = logits.device, logits.shape[1]
        sub_rows = [rows[i] for i in penalised]
        kinds = {name: _row_penalty([row.params for row in sub_rows], name, device) for name in PENALTY_NAMES}
        # Count only what some active penalty reads: prompts can be long.
        needs_prompt = any(
            row.params.penalty_is_active(name) and getattr(row.params, f"{name}_scope") == "prompt_and_output"
            for row in sub_rows
            for name in PENALTY_NAMES
        )
        prompts = [row.prompt_token_ids if needs_prompt else () for row in sub_rows]
        outputs = [row.output_token_ids for row in sub_rows]
        # Penalties never touch a token no row has seen, so they run on the seen columns only:
        # a few thousand instead of the whole vocabulary.
        seen = torch.tensor([t for ids in (*prompts, *outputs) for t in ids], dtype=torch.long, device=device)
        columns = seen[(seen >= 0) & (seen < vocab)].unique()
        if len(columns) == 0:
            return logits
        prompt_counts = token_counts(prompts, vocab, columns=columns, device=device) if needs_prompt else None
        output_counts = token_counts(outputs, vocab, columns=columns, device=device)
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
        return logits.index_put(cells, result)  # out of place: caller's logits untouched

    def _sample(self, logits: torch.Tensor, rows: Sequence[SamplingRow]) -> torch.Tensor:
        # From here on, logits may be the caller's tensor: only out-of-place ops touch it.
        logits = logits.float()
        if any(row.params.temperature != 1.0 for row in rows):
            logits = logits / torch.tensor([row.params.temperature for row in rows], device=logits.device)[:, None]
        vocab = logits.shape[1]
        truncated = [0 < row.params.top_k < vocab or row.params.top_p < 1.0 for row in rows]
        return _split(logits, rows, truncated, self._race_ranked, self._race_full)

    def _race_full(self, logits: torch.Tensor, rows: Sequence[SamplingRow]) -> torch.Tensor:
        """min-p and the race over the whole vocabulary, for rows without top-k/top-p."""
        top = logits.amax(dim=-1, keepdim=True)
        if any(row.params.min_p > 0.0 for row in rows):
            # p_i >= min_p * p_max  <=>  l_i >= l_max + log(min_p): no softmax needed.
            logits = logits.masked_fill(logits < top + _min_p_log(rows, logits.device), -math.inf)
        # The race argmax(p / q) ignores the softmax normaliser, so exp(l - l_max) is enough.
        weights = (logits - top).exp_()
        noise = self._noise(rows, [logits.shape[1]] * len(rows), logits.shape[1], logits.device)
        return weights.div_(noise).argmax(dim=-1)

    def _race_ranked(self, logits: torch.Tensor, rows: Sequence[SamplingRow], width: int = 0) -> torch.Tensor:
        """top-k, top-p, min-p and the race over each row's best tokens, ranked by logit.

        Rows with only top-p start from a shortlist of their best _TOP_P_SHORTLIST tokens (a
        partial topk, far cheaper than sorting the vocabulary); rows whose shortlist holds
        less than top_p of the mass are ranked in full, so the result is exact either way.
        """
        vocab, device = logits.shape[1], logits.device
        top_k = [row.params.top_k if 0 < row.params.top_k < vocab else vocab for row in rows]
        width = width or min(vocab, max(k if k < vocab else _TOP_P_SHORTLIST for k in top_k))
        values, order, keep, settled = _rank(logits, top_k, [row.params.top_p for row in rows], width)
        if width == vocab or bool(settled.all()):
            return self._race_prefix(values, order, keep, rows)
        tokens = torch.empty(len(rows), dtype=torch.long, device=device)
        done, redo = settled.nonzero()[:, 0], (~settled).nonzero()[:, 0]
        if len(done):
            tokens[done] = self._race_prefix(values[done], order[done], keep[done], [rows[i] for i in done.tolist()])
        tokens[redo] = self._race_ranked(logits[redo], [rows[i] for i in redo.tolist()], vocab)
        return tokens

    def _race_prefix(
        self, values: torch.Tensor, order: torch.Tensor, keep: torch.Tensor, rows: Sequence[SamplingRow]
    ) -> torch.Tensor:
        """min-p, then the race among kept ranked tokens; returns vocabulary ids."""
        if any(row.params.min_p > 0.0 for row in rows):
            keep &= values >= values[:, :1] + _min_p_log(rows, values.device)
        # Every filter keeps a prefix of the ranking, so the race only needs its longest prefix.
        kept = keep.sum(dim=-1)
        span = int(kept.max())
        weights = (values[:, :span] - values[:, :1]).exp_().masked_fill_(~keep[:, :span], 0.0)
        noise = self._noise(rows, kept.tolist(), span, values.device)
        choice = weights.div_(noise).argmax(dim=-1, keepdim=True)
        return order.gather(1, choice)[:, 0]

    def _noise(
        self, rows: Sequence[SamplingRow], lengths: Sequence[int], width: int, device: torch.device
    ) -> torch.Tensor:
        """[B, width] Exp(1) draws; a seeded row draws exactly lengths[i] from its own generator.

        Drawing a length that depends only on the row keeps seeded draws independent of the
        batch; positions past lengths[i] have zero weight, so any positive value does there.
        """
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
                noise[i, lengths[i] :] = 1.0
        return noise

    def _shared_generator(self, device: torch.device) -> torch.Generator:
        if device.type == "cpu":
            return self.generator
        if device not in self._device_generators:
            seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
            self._device_generators[device] = torch.Generator(device=device).manual_seed(seed)
        return self._device_generators[device]


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


def _rank(
    logits: torch.Tensor, top_k: Sequence[int], top_p: Sequence[float], width: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The best `width` tokens per row and which of them top-k and top-p keep.

    Returns (values, order, keep, settled), all [B, width] but settled [B]: settled is False
    for a row whose top-p set may reach past `width` (it must be ranked wider).
    """
    vocab, device = logits.shape[1], logits.device
    values, order = logits.topk(width, dim=-1)  # sorted, best first
    k = torch.tensor(top_k, device=device)
    keep = torch.arange(width, device=device)[None, :] < k[:, None]  # exactly k tokens
    ranked = values.masked_fill(~keep, -math.inf)
    norm = ranked.logsumexp(dim=-1)
    if any(k_row == vocab for k_row in top_k):
        # Without top-k, top-p shares are of the whole vocabulary, not of the shortlist.
        norm = torch.where(k >= vocab, logits.logsumexp(dim=-1), norm)
    probs = ranked.sub_(norm[:, None]).exp_()
    mass = probs.cumsum(dim=-1)
    # top_p == 1 must keep everything, but a float cumsum can reach 1.0 early.
    p = torch.tensor([p_row if p_row < 1.0 else math.inf for p_row in top_p], device=device)
    keep &= (mass - probs) < p[:, None]  # the token crossing top_p is kept
    settled = (k <= width) | (mass[:, -1] >= p)
    return values, order, keep, settled


def _min_p_log(rows: Sequence[SamplingRow], device: torch.device) -> torch.Tensor:
    """[B, 1] log(min_p): -inf where min_p is 0, so nothing is dropped there."""
    return torch.tensor([row.params.min_p for row in rows], device=device).log()[:, None]


def _fill_exponential(out: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Fill `out` in place with Exp(1) draws, as -log(U) with U ~ Uniform[0, 1).

    Never 0 (U < 1), so probs / q stays finite; U == 0 gives q = inf, i.e. weight 0.
    """
    return out.uniform_(generator=generator).log_().neg_()


def _split(
    logits: torch.Tensor,
    rows: Sequence[SamplingRow],
    first: Sequence[bool],
    on_first: Callable[[torch.Tensor, Sequence[SamplingRow]], torch.Tensor],
    on_rest: Callable[[torch.Tensor, Sequence[SamplingRow]], torch.Tensor],
) -> torch.Tensor:
    """Tokens for rows where `first` from on_first and for the others from on_rest.

    Gathers sub-batches only when the batch is mixed, so uniform batches pay nothing."""
    if all(first):
        return on_first(logits, rows)
    if not any(first):
        return on_rest(logits, rows)
    tokens = torch.empty(len(rows), dtype=torch.long, device=logits.device)
    for wanted, fn in ((True, on_first), (False, on_rest)):
        picked = [i for i, flag in enumerate(first) if flag == wanted]
        index = torch.tensor(picked, device=logits.device)
        tokens[index] = fn(logits[index], [rows[i] for i in picked])
    return tokens
