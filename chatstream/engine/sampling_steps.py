"""The sampler's steps, each a small pure function over a batch of logits.

This module owns the math of next-token selection, one function per step of `Sampler`'s docstring:
`block_tokens`, `apply_token_bitmask`, `apply_logit_bias`, `apply_temperature`, `greedy_tokens`, `rank_candidates` with `apply_top_k`,
`apply_top_p` and `apply_min_p`, and `draw`; plus `drop_non_finite`, the guard that keeps NaN and
inf out of every choice. (The penalties are their own module, `penalties.py`.) Inputs are tensors
and per-row settings as plain sequences; outputs are new tensors: nothing here keeps state or
changes its arguments, so each step can be read and tested alone.

After temperature the filters work on `Candidates`: either the whole vocabulary in id order (no
row of the batch asked for top-k or top-p) or each row's best tokens ranked by logit. Every filter
keeps a prefix of that ranking, so a row's kept set is just a count, `num_kept`, and the draw
races only over the longest kept prefix of the batch. Every filter keeps at least the row's top
token, so no filter can leave a row empty.

A new step is one more function of this shape, placed in the `Sampler` where its docstring says.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch


@dataclass(frozen=True)
class Candidates:
    """The tokens each row of a batch may still draw.

    `logits` is `[B, W]` float32. With `token_ids` None the columns are the vocabulary in id order
    (W = vocab_size) and a dropped token has logit -inf. Otherwise the columns are each row's W best
    tokens, best first, `token_ids[b, j]` is the vocabulary id of column j, and row b keeps its first
    `num_kept[b]` columns. `top` [B] is each row's best logit; `sampleable` is False for a row
    that had no finite logit at all (its draw means nothing), None when every row had one.
    `log_mass` (ranked only, where top-p needs it) is the log of the total exp(logit) of the
    tokens the row keeps, including any beyond the table's W columns.
    """

    logits: torch.Tensor
    vocab_size: int
    top: torch.Tensor
    sampleable: torch.Tensor | None  # [B] bool: False where the row had no finite logit; None: all rows have
    token_ids: torch.Tensor | None = None
    num_kept: torch.Tensor | None = None  # [B] long
    log_mass: torch.Tensor | None = None  # [B] float

    @property
    def is_ranked(self) -> bool:
        return self.token_ids is not None


def drop_non_finite(
    logits: torch.Tensor, top: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(logits, top, sampleable): NaN becomes -inf and +inf the largest finite value, so neither
    reaches a choice; `top` [B] is each row's best logit afterwards.

    `sampleable` is None when every row has a finite logit (the usual case), else [B] bool, False
    for a row with none left (all -inf or NaN): it has no token to choose, and its logits are zeroed
    so later steps stay free of NaN. Rows are checked with one max per row (`top`, when the caller
    has it already) and one sum; only rows that fail it are rewritten.
    """
    if top is None:
        top = logits.amax(dim=-1)  # NaN if the row has one, +inf if it has one, -inf if nothing is finite
    if math.isfinite(float(top.sum())):  # NaN and inf carry into the sum
        return logits, top, None
    finite = torch.isfinite(top)
    if bool(finite.all()):  # only the sum overflowed
        return logits, top, None
    rows = (~finite).nonzero()[:, 0]
    fixed = logits[rows].nan_to_num(nan=-math.inf, posinf=torch.finfo(logits.dtype).max, neginf=-math.inf)
    fixed_top = fixed.amax(dim=-1)
    empty = fixed_top == -math.inf
    fixed[empty] = 0.0
    fixed_top[empty] = 0.0
    sampleable = finite.index_put((rows,), ~empty)
    return logits.index_put((rows,), fixed), top.index_put((rows,), fixed_top), sampleable


def block_tokens(logits: torch.Tensor, blocked: Sequence[Sequence[int]]) -> torch.Tensor:
    """Logits with row b's `blocked[b]` token ids set to -inf; ids outside the vocabulary are ignored."""
    vocab = logits.shape[1]
    cells = [(b, t) for b, ids in enumerate(blocked) for t in ids if 0 <= t < vocab]
    if not cells:
        return logits
    row_index, token_index = torch.tensor(cells, device=logits.device).unbind(dim=1)
    minus_inf = torch.tensor(-math.inf, dtype=logits.dtype, device=logits.device)
    return logits.index_put((row_index, token_index), minus_inf)


def apply_token_bitmask(logits: torch.Tensor, bitmasks: Sequence[torch.Tensor | None]) -> torch.Tensor:
    """Logits with every token that row b's bitmask does not allow set to -inf (bitmask None: all allowed).

    A bitmask is an int32 row of ceil(V / 32) words, bit t % 32 of word t // 32 set when token t is
    allowed (the grammar engine's layout). Only the masked rows are unpacked, on the logits' device.
    """
    rows = [b for b, mask in enumerate(bitmasks) if mask is not None]
    if not rows:
        return logits
    device, vocab = logits.device, logits.shape[1]
    words = torch.stack([bitmasks[b] for b in rows]).to(device, non_blocking=True)  # type: ignore[misc]
    shifts = torch.arange(32, dtype=torch.int32, device=device)
    allowed = ((words[:, :, None] >> shifts) & 1).reshape(len(rows), -1)[:, :vocab].bool()
    if allowed.shape[1] < vocab:  # a bitmask narrower than the logits allows none of the rest
        allowed = torch.nn.functional.pad(allowed, (0, vocab - allowed.shape[1]), value=False)
    index = torch.tensor(rows, device=device)
    return logits.index_put((index,), logits[index].masked_fill(~allowed, -math.inf))


def apply_logit_bias(logits: torch.Tensor, biases: Sequence[dict[int, float] | None]) -> torch.Tensor:
    """Logits with row b's `biases[b]` (token id -> value) added; ids outside the vocabulary are ignored."""
    vocab = logits.shape[1]
    cells = [(b, t, v) for b, bias in enumerate(biases) if bias for t, v in bias.items() if 0 <= t < vocab]
    if not cells:
        return logits
    row_index = torch.tensor([c[0] for c in cells], device=logits.device)
    token_index = torch.tensor([c[1] for c in cells], device=logits.device)
    values = torch.tensor([c[2] for c in cells], dtype=logits.dtype, device=logits.device)
    return logits.index_put((row_index, token_index), values, accumulate=True)


def greedy_tokens(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """([B] the argmax of every row (ties: the lowest id), [B] its logit, NaN where the row has a NaN)."""
    top, tokens = logits.max(dim=-1)
    return tokens, top


def apply_temperature(logits: torch.Tensor, temperature: Sequence[float]) -> torch.Tensor:
    """float32 logits divided by each row's temperature (> 0)."""
    logits = logits.float()
    if all(t == 1.0 for t in temperature):
        return logits
    return logits / torch.tensor(temperature, dtype=torch.float32, device=logits.device)[:, None]


def rank_candidates(
    logits: torch.Tensor, top_k: Sequence[int], top_p: Sequence[float], shortlist: int
) -> list[tuple[list[int] | None, Candidates]]:
    """Each row's best tokens, enough of them to hold what its top-k and top-p can keep, as
    (rows, table) pairs: usually one table for the whole batch (rows None).

    `top_k[b]` outside (0, vocab) and `top_p[b]` >= 1 mean "off". With both off in every row the
    table is the whole vocabulary, unranked (ranking it would be wasted work). A row with top-k
    needs its k best; a row with only top-p starts from its `shortlist` best (a partial top-k is far
    cheaper than sorting the vocabulary), and the rows whose shortlist holds less than top_p of their
    mass are ranked in full, in a second table, so the others' table stays narrow and the result is
    exact either way. NaN and inf are kept out first (`drop_non_finite`), checked on the row maxima
    the ranking finds anyway.
    """
    vocab, device = logits.shape[1], logits.device
    k = [v if 0 < v < vocab else vocab for v in top_k]
    p_only = [kb == vocab and pb < 1.0 for kb, pb in zip(k, top_p)]
    if all(kb == vocab for kb in k) and not any(p_only):
        logits, top, sampleable = drop_non_finite(logits)
        return [(None, Candidates(logits, vocab, top, sampleable))]
    width = min(vocab, max(kb if kb < vocab else shortlist for kb in k))
    values, token_ids = logits.topk(width, dim=-1)  # sorted, best first: NaN and +inf come first
    first = values[:, 0]
    logits, top, sampleable = drop_non_finite(logits, first)
    if top is not first:  # some row was cleaned: rank again
        values, token_ids = logits.topk(width, dim=-1)
    # A top-p share is of the row's whole distribution: its normaliser spans the vocabulary.
    log_mass = logits.logsumexp(dim=-1) if any(p_only) else None
    table = _ranked(values, token_ids, vocab, sampleable, log_mass)
    if log_mass is None or width == vocab:
        return [(None, table)]
    p = torch.tensor(top_p, device=device)
    short = torch.tensor(p_only, device=device) & ((values.logsumexp(dim=-1) - log_mass).exp() < p)
    if not bool(short.any()):
        return [(None, table)]
    rows = short.nonzero()[:, 0]
    full = _ranked(*logits[rows].topk(vocab, dim=-1), vocab, _pick(sampleable, rows), log_mass[rows])
    if len(rows) == len(k):
        return [(None, full)]
    kept = (~short).nonzero()[:, 0]
    narrow = _ranked(values[kept], token_ids[kept], vocab, _pick(sampleable, kept), log_mass[kept])
    return [(kept.tolist(), narrow), (rows.tolist(), full)]


def _pick(sampleable: torch.Tensor | None, rows: torch.Tensor) -> torch.Tensor | None:
    return None if sampleable is None else sampleable[rows]


def _ranked(
    values: torch.Tensor, token_ids: torch.Tensor, vocab: int, sampleable: torch.Tensor | None,
    log_mass: torch.Tensor | None,
) -> Candidates:
    num_kept = torch.full((values.shape[0],), values.shape[1], dtype=torch.long, device=values.device)
    return Candidates(values, vocab, values[:, 0], sampleable, token_ids, num_kept, log_mass)


def apply_top_k(candidates: Candidates, top_k: Sequence[int]) -> Candidates:
    """Keep each row's k best tokens (k outside (0, vocab): all); ranked candidates cover every k."""
    vocab = candidates.vocab_size
    if all(not 0 < k < vocab for k in top_k):
        return candidates
    if not candidates.is_ranked:
        raise ValueError("top-k needs ranked candidates (see rank_candidates)")
    values, device = candidates.logits, candidates.logits.device
    k = torch.tensor([v if 0 < v < vocab else vocab for v in top_k], device=device)
    log_mass = candidates.log_mass
    if log_mass is not None:
        # top-p after top-k shares out the k kept tokens' mass, not the vocabulary's.
        beyond_k = torch.arange(values.shape[1], device=device)[None, :] >= k[:, None]
        log_mass = torch.where(k < vocab, values.masked_fill(beyond_k, -math.inf).logsumexp(dim=-1), log_mass)
    return replace(candidates, num_kept=torch.minimum(candidates.num_kept, k), log_mass=log_mass)


def apply_top_p(candidates: Candidates, top_p: Sequence[float]) -> Candidates:
    """Keep the fewest best tokens whose probability reaches top_p; the one crossing it is kept."""
    if all(p >= 1.0 for p in top_p):
        return candidates
    if not candidates.is_ranked:
        raise ValueError("top-p needs ranked candidates (see rank_candidates)")
    values, device = candidates.logits, candidates.logits.device
    log_mass = candidates.log_mass
    if log_mass is None:  # top-k alone made the table: the kept prefix holds all the mass
        kept = torch.arange(values.shape[1], device=device)[None, :] < candidates.num_kept[:, None]
        log_mass = values.masked_fill(~kept, -math.inf).logsumexp(dim=-1)
    probs = (values - log_mass[:, None]).exp_()
    mass_before = probs.cumsum(dim=-1).sub_(probs)
    # top_p == 1 must keep everything, but a float cumsum can reach 1.0 early.
    p = torch.tensor([v if v < 1.0 else math.inf for v in top_p], device=device)
    num_p = (mass_before < p[:, None]).sum(dim=-1).clamp_(min=1)  # the first token always stays
    return replace(candidates, num_kept=torch.minimum(candidates.num_kept, num_p))


def apply_min_p(candidates: Candidates, min_p: Sequence[float]) -> Candidates:
    """Keep tokens whose probability is at least min_p times the top token's (min_p 0: all)."""
    if all(m <= 0.0 for m in min_p):
        return candidates
    logits = candidates.logits
    # p_i >= min_p * p_max  <=>  l_i >= l_max + log(min_p): no softmax needed; log(0) = -inf keeps all.
    log_min_p = torch.tensor(min_p, dtype=torch.float32, device=logits.device).log()[:, None]
    if not candidates.is_ranked:
        floor = candidates.top[:, None] + log_min_p
        return replace(candidates, logits=logits.masked_fill(logits < floor, -math.inf))
    num_m = (logits >= logits[:, :1] + log_min_p).sum(dim=-1).clamp_(min=1)
    return replace(candidates, num_kept=torch.minimum(candidates.num_kept, num_m))


def draw_lengths(candidates: Candidates) -> tuple[list[int], int]:
    """(tokens each row draws among, the widest of them): the noise `draw` needs per row."""
    if not candidates.is_ranked:
        return [candidates.vocab_size] * candidates.logits.shape[0], candidates.vocab_size
    lengths = candidates.num_kept.clamp(max=candidates.logits.shape[1]).tolist()
    return lengths, max(lengths, default=0)


def draw(candidates: Candidates, noise: torch.Tensor) -> torch.Tensor:
    """[B] vocabulary ids: the exponential race argmax(p_i / q_i) over each row's kept tokens.

    `noise` is `[B, width]` Exp(1) draws, width and row lengths as `draw_lengths` says; it pairs
    with a row's kept tokens in ranking order (vocabulary order when unranked). The race ignores the
    softmax normaliser, so exp(l - l_max) is enough, and a dropped token's weight is 0.
    """
    logits = candidates.logits
    if not candidates.is_ranked:
        weights = (logits - candidates.top[:, None]).exp_()
        return weights.div_(noise).argmax(dim=-1)
    span = noise.shape[1]
    values = logits[:, :span]
    beyond = torch.arange(span, device=logits.device)[None, :] >= candidates.num_kept[:, None]
    weights = (values - values[:, :1]).exp_().masked_fill_(beyond, 0.0)
    choice = weights.div_(noise).argmax(dim=-1, keepdim=True)
    return candidates.token_ids.gather(1, choice)[:, 0]
