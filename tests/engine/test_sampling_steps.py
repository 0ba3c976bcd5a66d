"""Each step of the sampler on its own, against rows computed by hand (chatstream.engine.sampling_steps)."""

from __future__ import annotations

import math

import pytest
import torch

from chatstream.engine.sampling_steps import (
    Candidates,
    apply_min_p,
    apply_temperature,
    apply_top_k,
    apply_top_p,
    block_tokens,
    draw,
    draw_lengths,
    drop_non_finite,
    greedy_tokens,
    rank_candidates,
)

INF = math.inf
# Probabilities 0.5, 0.3, 0.2 (and a token that can never win), as logits.
P = [0.5, 0.3, 0.2]
LOGITS = [math.log(0.5), math.log(0.3), math.log(0.2)]


def ranked(rows: list[list[float]], **kwargs: object) -> Candidates:
    """Candidates for rows that are already sorted best first, one table over the whole vocabulary."""
    (subset, table), = rank_candidates(torch.tensor(rows), [len(rows[0]) - 1] * len(rows), [1.0] * len(rows), 1024)
    assert subset is None
    return table


def test_drop_non_finite_cleans_only_the_rows_that_need_it() -> None:
    logits = torch.tensor([[1.0, 2.0, 0.0], [1.0, math.nan, 3.0], [-INF, -INF, -INF], [0.0, INF, 1.0], [math.nan] * 3])
    clean, top, sampleable = drop_non_finite(logits)
    assert torch.equal(clean[0], logits[0])
    assert clean[1].tolist() == [1.0, -INF, 3.0]
    assert clean[3].tolist() == [0.0, torch.finfo(torch.float32).max, 1.0]
    assert clean[2].tolist() == clean[4].tolist() == [0.0, 0.0, 0.0]  # nothing to choose: zeroed, no NaN later
    assert sampleable.tolist() == [True, True, False, True, False]
    assert top.tolist() == [2.0, 3.0, 0.0, torch.finfo(torch.float32).max, 0.0]
    assert torch.isnan(logits[1, 1])  # the input is untouched
    finite = torch.randn(3, 5)
    same, _, ok = drop_non_finite(finite)
    assert same is finite and ok is None  # every row has a finite logit: nothing to rewrite or mark
    huge = torch.full((2, 3), 3e38)  # the row maxima sum to inf, yet every row is fine
    same, _, ok = drop_non_finite(huge)
    assert same is huge and ok is None


def test_block_tokens_sets_minus_inf_out_of_place_and_ignores_ids_outside_the_vocab() -> None:
    logits = torch.zeros(2, 4)
    blocked = block_tokens(logits, [[1, 3, 99, -1], []])
    assert blocked[0].tolist() == [0.0, -INF, 0.0, -INF] and blocked[1].tolist() == [0.0] * 4
    assert torch.equal(logits, torch.zeros(2, 4))
    assert block_tokens(logits, [[], [7]]) is logits


def test_greedy_tokens_take_the_argmax_and_report_its_logit() -> None:
    tokens, top = greedy_tokens(torch.tensor([[0.0, 2.0, 2.0], [5.0, -1.0, 0.0], [0.0, math.nan, 9.0]]))
    assert tokens.tolist()[:2] == [1, 0]  # a tie goes to the lowest id
    assert top.tolist()[:2] == [2.0, 5.0] and math.isnan(top[2])  # a NaN row is visible to the caller


def test_apply_temperature_divides_each_row_and_returns_float32() -> None:
    logits = torch.tensor([[2.0, -4.0], [2.0, -4.0]], dtype=torch.bfloat16)
    out = apply_temperature(logits, [0.5, 2.0])
    assert out.dtype == torch.float32 and out.tolist() == [[4.0, -8.0], [1.0, -2.0]]
    assert apply_temperature(torch.ones(1, 2), [1.0]).tolist() == [[1.0, 1.0]]


def test_rank_candidates_without_filters_is_the_whole_vocabulary_unranked() -> None:
    logits = torch.tensor([[0.0, 3.0, 1.0]])
    (subset, table), = rank_candidates(logits, [0], [1.0], 1024)
    assert subset is None and not table.is_ranked and torch.equal(table.logits, logits)
    assert table.top.tolist() == [3.0]


def test_rank_candidates_ranks_as_many_as_the_largest_k() -> None:
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0], [4.0, 3.0, 2.0, 1.0]])
    (subset, table), = rank_candidates(logits, [2, 3], [1.0, 1.0], 1024)
    assert subset is None and table.logits.tolist() == [[3.0, 2.0, 1.0], [4.0, 3.0, 2.0]]
    assert table.token_ids.tolist() == [[1, 3, 2], [0, 1, 2]] and table.num_kept.tolist() == [3, 3]
    assert table.log_mass is None  # no row with top-p alone: nothing needs the whole vocabulary's mass


def test_rank_candidates_ranks_in_full_only_the_rows_the_shortlist_cannot_hold() -> None:
    vocab = 64
    peaked = torch.full((vocab,), -10.0)
    peaked[5] = 10.0  # all of its mass in one token
    flat = torch.zeros(vocab)  # its 0.9 top-p set needs 58 tokens
    tables = rank_candidates(torch.stack([peaked, flat, peaked]), [0, 0, 0], [0.9, 0.9, 0.9], shortlist=8)
    (narrow_rows, narrow), (full_rows, full) = tables
    assert narrow_rows == [0, 2] and narrow.logits.shape == (2, 8) and narrow.token_ids[:, 0].tolist() == [5, 5]
    assert full_rows == [1] and full.logits.shape == (1, vocab)
    # Top-p shares are of the whole vocabulary, so the normaliser is the full logsumexp.
    assert full.log_mass.tolist() == pytest.approx([math.log(vocab)])
    (only, table), = rank_candidates(torch.stack([flat, flat]), [0, 0], [0.9, 0.9], shortlist=8)
    assert only is None and table.logits.shape == (2, vocab)


def test_rank_candidates_keeps_nan_and_inf_out() -> None:
    logits = torch.tensor([[1.0, math.nan, 0.0], [-INF, -INF, -INF], [0.0, INF, 2.0]])
    (_, table), = rank_candidates(logits, [2, 2, 2], [1.0, 1.0, 1.0], 1024)
    assert table.sampleable.tolist() == [True, False, True]
    assert table.token_ids[0].tolist() == [0, 2] and table.token_ids[2, 0].item() == 1
    assert torch.isfinite(table.logits).all()


def test_apply_top_k_keeps_k_per_row_and_renormalises_for_top_p() -> None:
    table = ranked([LOGITS + [-INF], LOGITS + [-INF]])
    table = apply_top_k(table, [2, 0])  # 0: off
    assert table.num_kept.tolist() == [2, 3]  # the table holds 3 columns: top_k 0 keeps them all
    with_mass = rank_candidates(torch.tensor([LOGITS, LOGITS]), [2, 0], [0.6, 0.6], 1024)[0][1]
    with_mass = apply_top_k(with_mass, [2, 0])
    assert with_mass.num_kept.tolist() == [2, 3]
    # Row 0 keeps 0.5 and 0.3: its mass is 0.8 of the whole; row 1 keeps everything.
    assert with_mass.log_mass.exp().tolist() == pytest.approx([0.8, 1.0])
    assert apply_top_k(table, [0, -1]) is table


@pytest.mark.parametrize(
    ("top_p", "kept"), [(0.45, 1), (0.49, 1), (0.6, 2), (0.79, 2), (0.81, 3), (1.0, 3), (1e-300, 1), (0.0, 1)]
)
def test_apply_top_p_keeps_the_token_that_crosses_the_threshold(top_p: float, kept: int) -> None:
    table = rank_candidates(torch.tensor([LOGITS]), [0], [0.5], 1024)[0][1]
    # mass before each token: 0, 0.5, 0.8. A top_p that float32 rounds to 0 still keeps the top token.
    assert apply_top_p(table, [top_p]).num_kept.tolist() == [kept]


def test_apply_top_p_after_top_k_shares_out_the_kept_mass() -> None:
    table = rank_candidates(torch.tensor([LOGITS]), [2], [0.6], 1024)[0][1]
    table = apply_top_p(apply_top_k(table, [2]), [0.6])
    assert table.num_kept.tolist() == [1]  # 0.5 / 0.8 = 0.625 >= 0.6 already


@pytest.mark.parametrize(("min_p", "kept"), [(0.0, 3), (0.4, 3), (0.5, 2), (0.61, 1), (1.0, 1)])
def test_apply_min_p_keeps_tokens_above_a_fraction_of_the_top(min_p: float, kept: int) -> None:
    # 0.3 / 0.5 = 0.6 and 0.2 / 0.5 = 0.4 of the top token's probability.
    table = ranked([LOGITS + [-INF]])
    assert apply_min_p(table, [min_p]).num_kept.tolist() == [kept]
    (_, whole), = rank_candidates(torch.tensor([LOGITS]), [0], [1.0], 1024)
    dropped = apply_min_p(whole, [min_p]).logits[0].isinf().sum().item()
    assert dropped == 3 - kept


def test_draw_races_weights_against_noise_among_kept_tokens_only() -> None:
    table = ranked([[3.0, 2.0, 1.0, -INF]])
    table = apply_top_k(table, [2])
    assert draw_lengths(table) == ([2], 2)
    # weight / noise: exp(0) / 1 = 1 against exp(-1) / 0.1 = 3.68: the second token wins.
    assert draw(table, torch.tensor([[1.0, 0.1]])).tolist() == [table.token_ids[0, 1].item()]
    assert draw(table, torch.tensor([[1.0, 1.0]])).tolist() == [table.token_ids[0, 0].item()]
    (_, whole), = rank_candidates(torch.tensor([[0.0, 5.0, 1.0]]), [0], [1.0], 1024)
    assert draw_lengths(whole) == ([3], 3)
    assert draw(whole, torch.tensor([[1e-9, 1.0, 1.0]])).tolist() == [0]  # tiny noise: token 0 wins the race
    assert draw(whole, torch.ones(1, 3)).tolist() == [1]
