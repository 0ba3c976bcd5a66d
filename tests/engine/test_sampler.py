"""Sampler behaviour: greedy, filters, blocking, penalties, seeding and the sampled distribution."""

from __future__ import annotations

import math

import pytest
import torch

import chatstream.engine.sampler as sampler_module
from chatstream.engine.sampler import Sampler, SamplingRow
from chatstream.engine.sampling_params import SamplingParams

V = 16


def _row(output: list[int] | None = None, blocked: tuple[int, ...] = (), **params: object) -> SamplingRow:
    return SamplingRow(SamplingParams(**params), [1, 2, 3], output_token_ids=output or [], blocked_token_ids=blocked)


def _sampler(vocab: int = V, seed: int = 0) -> Sampler:
    sampler = Sampler(vocab)
    sampler.generator.manual_seed(seed)
    return sampler


def _draws(logits_row: list[float], n: int = 2000, **params: object) -> torch.Tensor:
    """n independent draws from one row (a batch of n identical unseeded rows)."""
    logits = torch.tensor([logits_row] * n)
    return _sampler(len(logits_row))(logits, [_row(**params) for _ in range(n)])


def test_greedy_is_argmax_and_returns_long_on_logits_device() -> None:
    logits = torch.randn(6, V, generator=torch.Generator().manual_seed(1))
    tokens = _sampler()(logits, [_row(temperature=0.0) for _ in range(6)])
    assert tokens.dtype == torch.long and tokens.device == logits.device
    assert tokens.tolist() == logits.argmax(dim=-1).tolist()


def test_empty_batch_and_shape_mismatch() -> None:
    assert _sampler()(torch.empty(0, V), []).tolist() == []
    with pytest.raises(ValueError):
        _sampler()(torch.zeros(2, V), [_row()])


def test_mixed_batch_greedy_rows_take_argmax() -> None:
    logits = torch.randn(8, V, generator=torch.Generator().manual_seed(2))
    rows = [_row(temperature=0.0 if i % 2 == 0 else 1.0) for i in range(8)]
    tokens = _sampler()(logits, rows)
    assert tokens[::2].tolist() == logits.argmax(dim=-1)[::2].tolist()


def test_blocked_tokens_are_never_sampled_and_input_is_untouched() -> None:
    logits = torch.zeros(500, V)
    logits[:, 3] = 5.0  # the favourite, but blocked
    original = logits.clone()
    rows = [_row(blocked=(3, 4, 10_000)) for _ in range(500)]  # out-of-vocab ids are ignored
    tokens = _sampler()(logits, rows)
    assert not torch.isin(tokens, torch.tensor([3, 4])).any()
    assert torch.equal(logits, original)
    greedy = _sampler()(logits[:1], [_row(blocked=(3,), temperature=0.0)])
    assert greedy.item() != 3


def test_padding_columns_beyond_vocab_size_are_never_sampled() -> None:
    logits = torch.zeros(200, V + 4)
    logits[:, V:] = 50.0
    tokens = _sampler(V)(logits, [_row() for _ in range(200)])
    assert (tokens < V).all()
    assert _sampler(V)(logits[:1], [_row(temperature=0.0)]).item() < V


def test_top_k_one_equals_greedy() -> None:
    logits = torch.randn(50, V, generator=torch.Generator().manual_seed(3))
    tokens = _sampler()(logits, [_row(top_k=1, temperature=2.0) for _ in range(50)])
    assert tokens.tolist() == logits.argmax(dim=-1).tolist()


def test_top_k_keeps_only_k_best_and_clamps_to_vocab() -> None:
    logits_row = [3.0, 2.9, 2.8, 0.0, 0.0, 0.0]
    assert set(_draws(logits_row, top_k=2).tolist()) == {0, 1}
    assert set(_draws(logits_row, n=3000, top_k=1000, temperature=5.0).tolist()) == set(range(6))


def test_top_p_tiny_keeps_only_the_top_token() -> None:
    logits = torch.randn(50, V, generator=torch.Generator().manual_seed(4))
    tokens = _sampler()(logits, [_row(top_p=1e-6, temperature=3.0) for _ in range(50)])
    assert tokens.tolist() == logits.argmax(dim=-1).tolist()


def test_top_p_keeps_the_token_crossing_the_threshold() -> None:
    logits_row = [math.log(0.5), math.log(0.3), math.log(0.2)]
    # 0.5 < 0.6, so token 1 (crossing to 0.8) stays; token 2 goes.
    assert set(_draws(logits_row, top_p=0.6).tolist()) == {0, 1}
    assert set(_draws(logits_row, top_p=0.45).tolist()) == {0}


def test_top_p_applies_to_the_top_k_renormalised_distribution() -> None:
    logits_row = [math.log(0.5), math.log(0.3), math.log(0.2)]
    # After top-k=2 the shares are 0.625 and 0.375: 0.625 >= 0.6 already, so token 1 goes.
    assert set(_draws(logits_row, top_k=2, top_p=0.6).tolist()) == {0}


def test_top_p_shortlist_falls_back_to_full_ranking(monkeypatch: pytest.MonkeyPatch) -> None:
    vocab = 2000
    gen = torch.Generator().manual_seed(6)
    peaked = torch.randn(vocab, generator=gen) * 0.01
    peaked[:5] += 12.0  # its top-p set sits inside the shortlist
    flat = torch.randn(vocab, generator=gen) * 0.5  # its top-p set needs far more than 1024 tokens
    probs = flat.softmax(dim=-1).sort(descending=True).values
    needed = int(((probs.cumsum(dim=0) - probs) < 0.9).sum())
    assert needed > sampler_module._TOP_P_SHORTLIST

    n = 150
    tokens = _sampler(vocab)(torch.stack([flat] * n + [peaked] * n), [_row(top_p=0.9) for _ in range(2 * n)])
    rank = {token: r for r, token in enumerate(flat.argsort(descending=True).tolist())}
    flat_ranks = [rank[t] for t in tokens[:n].tolist()]
    assert max(flat_ranks) < needed and max(flat_ranks) >= sampler_module._TOP_P_SHORTLIST
    assert (tokens[n:] < 5).all()

    # Seeded draws come out the same whether or not the shortlist was tried first.
    batch = torch.stack([peaked, flat])
    rows = [[_row(output=[s], seed=s, top_p=0.9), _row(output=[s], seed=s, top_p=0.9)] for s in range(10)]
    with_shortlist = [_sampler(vocab)(batch, pair).tolist() for pair in rows]
    monkeypatch.setattr(sampler_module, "_TOP_P_SHORTLIST", vocab)
    assert [_sampler(vocab)(batch, pair).tolist() for pair in rows] == with_shortlist


def test_top_k_and_top_p_rows_mix_in_one_batch() -> None:
    logits_row = [math.log(0.5), math.log(0.3), math.log(0.2)]
    logits = torch.tensor([logits_row] * 600)
    rows = [_row(top_p=0.6), _row(top_k=1), _row()] * 200
    tokens = _sampler(3)(logits, rows)
    assert set(tokens[0::3].tolist()) == {0, 1}
    assert set(tokens[1::3].tolist()) == {0}
    assert set(tokens[2::3].tolist()) == {0, 1, 2}


def test_min_p_drops_tokens_below_fraction_of_top_probability() -> None:
    logits_row = [math.log(0.5), math.log(0.3), math.log(0.2)]
    # threshold 0.5 * 0.5 = 0.25: token 2 (0.2) goes.
    assert set(_draws(logits_row, min_p=0.5).tolist()) == {0, 1}
    assert set(_draws(logits_row, min_p=1.0).tolist()) == {0}


def test_penalty_changes_greedy_choice_only_for_penalised_rows() -> None:
    logits = torch.tensor([[1.0, 0.9, 0.0]] * 2)
    rows = [
        _row(output=[0], temperature=0.0, repetition_penalty=2.0, repetition_penalty_scope="output"),
        _row(output=[0], temperature=0.0),
    ]
    assert _sampler(3)(logits, rows).tolist() == [1, 0]
    # The default scope also counts the prompt [1, 2, 3]: token 1 is penalised too (0.45 < 0.5).
    assert _sampler(3)(logits[:1], [_row(output=[0], temperature=0.0, repetition_penalty=2.0)]).item() == 0
    sub = _row(output=[0, 0], temperature=0.0, frequency_penalty=0.1)  # 1.0 - 0.2 < 0.9
    assert _sampler(3)(logits[:1], [sub]).item() == 1


def test_sampled_frequencies_match_softmax() -> None:
    logits_row = [1.0, 0.5, 0.0, -0.5, -1.0]
    n = 8000
    counts = torch.bincount(_draws(logits_row, n=n), minlength=5).float() / n
    expected = torch.tensor(logits_row).softmax(dim=-1)
    assert torch.allclose(counts, expected, atol=0.03), (counts, expected)


def test_temperature_sharpens_and_flattens() -> None:
    logits_row = [2.0, 1.0, 0.0]
    cold = _draws(logits_row, temperature=0.1)
    assert (cold == 0).float().mean() > 0.99
    hot = torch.bincount(_draws(logits_row, n=3000, temperature=50.0), minlength=3).float() / 3000
    assert torch.allclose(hot, torch.full((3,), 1 / 3), atol=0.05)


def test_seeded_row_is_independent_of_batch_composition_and_position() -> None:
    gen = torch.Generator().manual_seed(5)
    target = torch.randn(64, generator=gen) * 0.1  # nearly flat: a coincidence is unlikely
    others = torch.randn(3, 64, generator=gen)
    for seed in range(10):
        row = _row(output=[7, 8, 9], seed=seed, top_p=0.95)
        alone = _sampler(64, seed=1)(target[None], [row]).item()
        batch = torch.stack([others[0], others[1], target, others[2]])
        rows = [_row(temperature=0.0), _row(seed=99), row, _row(top_k=3)]
        mixed = _sampler(64, seed=2)(batch, rows)[2].item()
        assert alone == mixed, seed


def test_seeded_draw_depends_on_output_length_and_seed() -> None:
    logits = torch.zeros(1, 64)
    by_length = {_sampler(64)(logits, [_row(output=[0] * n, seed=3)]).item() for n in range(30)}
    by_seed = {_sampler(64)(logits, [_row(seed=s)]).item() for s in range(30)}
    # 30 uniform draws over 64 tokens: far more than 5 distinct values unless draws repeat.
    assert len(by_length) > 5 and len(by_seed) > 5


def test_unseeded_rows_follow_the_sampler_generator() -> None:
    logits = torch.zeros(20, 64)
    rows = [_row() for _ in range(20)]
    assert torch.equal(_sampler(64, seed=7)(logits, rows), _sampler(64, seed=7)(logits, rows))
    assert not torch.equal(_sampler(64, seed=7)(logits, rows), _sampler(64, seed=8)(logits, rows))


def _unvalidated(**params: object) -> SamplingRow:
    """A row whose params were changed after validation (the sampler must survive what validation forbids)."""
    row = _row()
    for name, value in params.items():
        setattr(row.params, name, value)
    return row


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_degenerate_settings_still_pick_a_real_token(temperature: float) -> None:
    logits = torch.randn(4, V, generator=torch.Generator().manual_seed(9)) * 3
    rows = [
        _unvalidated(top_p=1e-300, temperature=temperature),  # 0 in float32: nothing would cross it
        _unvalidated(repetition_penalty=1e-300, temperature=temperature),  # logit / 0 = inf, then inf - inf = NaN
        _unvalidated(min_p=1.0, top_k=1, top_p=1e-45, temperature=temperature),
        _unvalidated(presence_penalty=1e-300, presence_penalty_mode="multiplicative", temperature=temperature),
    ]
    for row in rows:
        row.output_token_ids.extend([0, 1, 2, 3])  # seen tokens, so the penalties bite
    batched = _sampler()(logits, rows)
    alone = torch.cat([_sampler()(logits[i:i + 1], [row]) for i, row in enumerate(rows)])
    for tokens in (batched, alone):
        assert ((tokens >= 0) & (tokens < V)).all()
        assert tokens[0].item() == logits[0].argmax().item()  # top-p keeps at least the top token
        assert tokens[2].item() == logits[2].argmax().item()


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_non_finite_logits_never_reach_a_choice(temperature: float) -> None:
    logits = torch.zeros(5, V)
    logits[0, 3] = math.nan  # a NaN is never chosen
    logits[0, 4] = 1.0
    logits[1, 6] = math.inf  # +inf is the best there is
    logits[2] = -math.inf  # nothing to choose
    logits[3] = math.nan
    logits[4, 2] = 5.0  # a normal row beside them
    rows = [_row(temperature=temperature, **extra) for extra in ({}, {}, {}, {"top_p": 0.5}, {"top_k": 3})]
    tokens = _sampler()(logits, rows).tolist()
    assert tokens[1] == 6 and tokens[2] == tokens[3] == sampler_module.NO_TOKEN
    assert tokens[0] != 3 and 0 <= tokens[0] < V and (temperature or tokens[0] == 4)
    assert 0 <= tokens[4] < V and (temperature or tokens[4] == 2)


def test_a_row_with_every_token_blocked_gets_no_token() -> None:
    rows = [_row(blocked=tuple(range(V))), _row(temperature=0.0, blocked=tuple(range(V))), _row(temperature=0.0)]
    tokens = _sampler()(torch.randn(3, V), rows).tolist()
    assert tokens[:2] == [sampler_module.NO_TOKEN] * 2 and 0 <= tokens[2] < V
