"""Penalty math against hand-computed rows, for every penalty x mode x scope."""

from __future__ import annotations

import math

import pytest
import torch

from chatstream.engine.penalties import RowPenalty, apply_penalties, token_counts

# One row shared by every case. Vocab of 5.
LOGITS = [2.0, -1.0, 0.5, -3.0, 1.0]
PROMPT = [0, 1, 1]  # prompt counts:            [1, 2, 0, 0, 0]
OUTPUT = [1, 2, 2]  # output counts:            [0, 1, 2, 0, 0]
#                     prompt_and_output counts: [1, 3, 2, 0, 0]
V = 5

# (penalty, mode, scope, value, expected row), each expected row worked out by hand.
CASES = [
    # repetition: like presence, f = p where the count is > 0.
    ("repetition", "multiplicative", "output", 2.0, [2.0, -2.0, 0.25, -3.0, 1.0]),
    ("repetition", "multiplicative", "prompt_and_output", 2.0, [1.0, -2.0, 0.25, -3.0, 1.0]),
    ("repetition", "multiplicative", "output", 0.5, [2.0, -0.5, 1.0, -3.0, 1.0]),
    ("repetition", "subtractive", "output", 0.5, [2.0, -1.5, 0.0, -3.0, 1.0]),
    ("repetition", "subtractive", "prompt_and_output", 0.5, [1.5, -1.5, 0.0, -3.0, 1.0]),
    ("repetition", "subtractive", "output", -1.0, [2.0, 0.0, 1.5, -3.0, 1.0]),
    # frequency: multiplicative f = p ** count, subtractive l - count * p.
    ("frequency", "multiplicative", "output", 2.0, [2.0, -2.0, 0.125, -3.0, 1.0]),
    ("frequency", "multiplicative", "prompt_and_output", 2.0, [1.0, -8.0, 0.125, -3.0, 1.0]),
    ("frequency", "subtractive", "output", 0.5, [2.0, -1.5, -0.5, -3.0, 1.0]),
    ("frequency", "subtractive", "prompt_and_output", 0.5, [1.5, -2.5, -0.5, -3.0, 1.0]),
    ("frequency", "subtractive", "prompt_and_output", -0.5, [2.5, 0.5, 1.5, -3.0, 1.0]),
    # presence.
    ("presence", "multiplicative", "output", 2.0, [2.0, -2.0, 0.25, -3.0, 1.0]),
    ("presence", "multiplicative", "prompt_and_output", 2.0, [1.0, -2.0, 0.25, -3.0, 1.0]),
    ("presence", "subtractive", "output", 0.5, [2.0, -1.5, 0.0, -3.0, 1.0]),
    ("presence", "subtractive", "prompt_and_output", 0.5, [1.5, -1.5, 0.0, -3.0, 1.0]),
]

NEUTRAL = {"multiplicative": 1.0, "subtractive": 0.0}


def _penalty(values: list[float], modes: list[str], scopes: list[str]) -> RowPenalty:
    return RowPenalty(
        value=torch.tensor(values),
        multiplicative=torch.tensor([mode == "multiplicative" for mode in modes]),
        include_prompt=torch.tensor([scope == "prompt_and_output" for scope in scopes]),
    )


def _counts(rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    return token_counts([PROMPT] * rows, V), token_counts([OUTPUT] * rows, V)


def test_token_counts_counts_repeats_and_ignores_out_of_range_ids() -> None:
    counts = token_counts([[1, 1, 3], [], [0, 4, 4, 4, -1, 5]], V)
    expected = [[0, 2, 0, 1, 0], [0, 0, 0, 0, 0], [1, 0, 0, 0, 3]]
    assert counts.tolist() == expected
    assert counts.dtype == torch.float32


def test_token_counts_narrowed_to_columns() -> None:
    columns = torch.tensor([1, 4])
    counts = token_counts([[1, 1, 3], [4, 0, 4, 9]], V, columns=columns)
    assert counts.tolist() == [[2, 0], [0, 2]]
    assert token_counts([[1]], V, columns=torch.tensor([], dtype=torch.long)).shape == (1, 0)


@pytest.mark.parametrize(("kind", "mode", "scope", "value", "expected"), CASES)
def test_single_penalty_matches_hand_computed_row(
    kind: str, mode: str, scope: str, value: float, expected: list[float]
) -> None:
    prompt_counts, output_counts = _counts(1)
    logits = torch.tensor([LOGITS])
    result = apply_penalties(logits, prompt_counts, output_counts, **{kind: _penalty([value], [mode], [scope])})
    assert result.tolist() == [pytest.approx(expected)]
    assert logits.tolist() == [LOGITS]  # pure: the input is untouched


def test_every_case_in_one_batch_uses_per_row_modes_and_scopes() -> None:
    # Each row carries one case; the other two penalties are neutral in that row.
    rows = len(CASES)
    prompt_counts, output_counts = _counts(rows)
    penalties = {}
    for kind in ("repetition", "frequency", "presence"):
        modes = [case[1] if case[0] == kind else "multiplicative" for case in CASES]
        scopes = [case[2] if case[0] == kind else "output" for case in CASES]
        values = [case[3] if case[0] == kind else NEUTRAL[modes[i]] for i, case in enumerate(CASES)]
        penalties[kind] = _penalty(values, modes, scopes)
    result = apply_penalties(torch.tensor([LOGITS] * rows), prompt_counts, output_counts, **penalties)
    for row, case in zip(result.tolist(), CASES):
        assert row == pytest.approx(case[4]), case


def test_combined_subtractive_after_multiplicative_repetition() -> None:
    prompt_counts, output_counts = _counts(1)
    result = apply_penalties(
        torch.tensor([LOGITS]),
        prompt_counts,
        output_counts,
        repetition=_penalty([2.0], ["multiplicative"], ["prompt_and_output"]),
        frequency=_penalty([0.5], ["subtractive"], ["output"]),
        presence=_penalty([0.25], ["subtractive"], ["output"]),
    )
    # repetition: [1.0, -2.0, 0.25, -3.0, 1.0]; frequency: [1.0, -2.5, -0.75, -3.0, 1.0];
    # presence: [1.0, -2.75, -1.0, -3.0, 1.0]
    assert result.tolist() == [pytest.approx([1.0, -2.75, -1.0, -3.0, 1.0])]


def test_combined_order_is_repetition_frequency_presence() -> None:
    prompt_counts, output_counts = _counts(1)
    result = apply_penalties(
        torch.tensor([LOGITS]),
        prompt_counts,
        output_counts,
        repetition=_penalty([0.5], ["subtractive"], ["prompt_and_output"]),
        frequency=_penalty([2.0], ["multiplicative"], ["output"]),
        presence=_penalty([4.0], ["multiplicative"], ["prompt_and_output"]),
    )
    # repetition: [1.5, -1.5, 0.0, -3.0, 1.0]; frequency: [1.5, -3.0, 0.0, -3.0, 1.0];
    # presence: [0.375, -12.0, 0.0, -3.0, 1.0]
    assert result.tolist() == [pytest.approx([0.375, -12.0, 0.0, -3.0, 1.0])]


def test_neutral_rows_and_missing_prompt_counts_leave_logits_unchanged() -> None:
    _, output_counts = _counts(2)
    logits = torch.tensor([LOGITS, LOGITS])
    result = apply_penalties(
        logits,
        None,
        output_counts,
        repetition=_penalty([1.0, 0.0], ["multiplicative", "subtractive"], ["prompt_and_output"] * 2),
        frequency=_penalty([1.0, 0.0], ["multiplicative", "subtractive"], ["output"] * 2),
    )
    assert result.tolist() == [LOGITS, LOGITS]


def test_blocked_logits_stay_minus_infinity() -> None:
    prompt_counts, output_counts = _counts(2)
    logits = torch.tensor([LOGITS, LOGITS])
    logits[:, 1] = -math.inf
    result = apply_penalties(
        logits,
        prompt_counts,
        output_counts,
        repetition=_penalty([2.0, 0.5], ["multiplicative", "subtractive"], ["prompt_and_output"] * 2),
        frequency=_penalty([3.0, -2.0], ["multiplicative", "subtractive"], ["prompt_and_output"] * 2),
    )
    assert result[:, 1].tolist() == [-math.inf, -math.inf]


def test_huge_multiplicative_frequency_stays_finite() -> None:
    counts = token_counts([[0] * 200 + [1] * 200 + [2] * 200], 4)
    for value in (10.0, 0.1):
        result = apply_penalties(
            torch.tensor([[1.0, 0.0, -1.0, 2.0]]),
            None,
            counts,
            frequency=_penalty([value], ["multiplicative"], ["output"]),
        )
        assert torch.isfinite(result).all(), value
        assert result[0, 1].item() == 0.0 and result[0, 3].item() == 2.0
