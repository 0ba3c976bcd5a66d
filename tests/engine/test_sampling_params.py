"""SamplingParams defaults, validation messages and normalisation."""

from __future__ import annotations

import math

import pytest

from chatstream.engine.sampling_params import SamplingParams


def test_defaults() -> None:
    params = SamplingParams()
    assert params.max_tokens == 256
    assert params.temperature == 1.0 and params.top_k == 0 and params.top_p == 1.0 and params.min_p == 0.0
    assert params.seed is None and params.stop == [] and params.stop_token_ids == []
    assert params.ignore_eos is False and params.min_tokens == 0
    assert (params.repetition_penalty, params.frequency_penalty, params.presence_penalty) == (1.0, 0.0, 0.0)
    assert params.repetition_penalty_mode == "multiplicative"
    assert params.repetition_penalty_scope == "prompt_and_output"
    assert params.frequency_penalty_mode == params.presence_penalty_mode == "subtractive"
    assert params.frequency_penalty_scope == params.presence_penalty_scope == "output"
    assert params.skip_special_tokens is True and params.include_stop_str_in_output is False
    assert not params.is_greedy and not params.has_penalties


@pytest.mark.parametrize(
    ("kwargs", "fragments"),
    [
        ({"max_tokens": 0}, ["max_tokens", ">= 1"]),
        ({"max_tokens": 2.5}, ["max_tokens", ">= 1"]),
        ({"temperature": -0.1}, ["temperature", "[0, 100]"]),
        ({"temperature": math.nan}, ["temperature", "[0, 100]"]),
        ({"temperature": math.inf}, ["temperature", "[0, 100]"]),
        ({"temperature": 100.5}, ["temperature", "[0, 100]"]),
        ({"temperature": 10**400}, ["temperature", "[0, 100]"]),
        ({"top_k": -2}, ["top_k", ">= 1"]),
        ({"top_k": 1.5}, ["top_k", ">= 1"]),
        ({"top_p": 0.0}, ["top_p", "[1e-09, 1]"]),
        ({"top_p": 1e-300}, ["top_p", "[1e-09, 1]"]),  # 0 in float32: no token would be kept
        ({"top_p": 1.5}, ["top_p", "[1e-09, 1]", "1.5"]),
        ({"min_p": -0.1}, ["min_p", "[0, 1]"]),
        ({"min_p": 1.1}, ["min_p", "[0, 1]"]),
        ({"seed": 1.5}, ["seed", "integer"]),
        ({"seed": 2**64}, ["seed", "[-2**63, 2**64 - 1]"]),
        ({"seed": -(10**5000)}, ["seed", "[-2**63, 2**64 - 1]", "too large to print"]),
        ({"min_tokens": -1}, ["min_tokens", ">= 0"]),
        ({"min_tokens": 11, "max_tokens": 10}, ["min_tokens", "max_tokens=10"]),
        ({"repetition_penalty": 0.0}, ["repetition_penalty", "[0.01, 10]", "repetition_penalty_mode"]),
        ({"repetition_penalty": 1e-300}, ["repetition_penalty", "[0.01, 10]"]),  # logit / 0 in float32
        ({"repetition_penalty": 10.5}, ["repetition_penalty", "[0.01, 10]"]),
        ({"repetition_penalty": 3.0, "repetition_penalty_mode": "subtractive"}, ["repetition_penalty", "[-2, 2]"]),
        ({"frequency_penalty": 2.5}, ["frequency_penalty", "[-2, 2]", "frequency_penalty_mode"]),
        ({"frequency_penalty": -2.1}, ["frequency_penalty", "[-2, 2]"]),
        ({"frequency_penalty_mode": "multiplicative"}, ["frequency_penalty", "[0.01, 10]", "frequency_penalty_mode"]),
        ({"presence_penalty": -3.0}, ["presence_penalty", "[-2, 2]"]),
        ({"presence_penalty": -1.0, "presence_penalty_mode": "multiplicative"}, ["presence_penalty", "[0.01, 10]"]),
        ({"presence_penalty": 1e-300, "presence_penalty_mode": "multiplicative"}, ["presence_penalty", "[0.01, 10]"]),
        ({"presence_penalty": math.nan}, ["presence_penalty", "[-2, 2]"]),
        ({"repetition_penalty_mode": "additive"}, ["repetition_penalty_mode", "'multiplicative'", "'subtractive'"]),
        ({"frequency_penalty_scope": "prompt"}, ["frequency_penalty_scope", "'prompt_and_output'", "'output'"]),
        ({"presence_penalty_scope": None}, ["presence_penalty_scope", "'output'"]),
        ({"stop": ["ok", ""]}, ["stop", "non-empty"]),
        ({"stop": [1]}, ["stop", "strings"]),
        ({"stop_token_ids": [-1]}, ["stop_token_ids", ">= 0"]),
        ({"stop_token_ids": ["2"]}, ["stop_token_ids", ">= 0"]),
        ({"stop": ["s"] * 33}, ["stop", "at most 32 strings", "33"]),
        ({"stop": ["ok", "x" * 1025]}, ["stop", "at most 1024 characters", "1025", "stop string 1"]),
        ({"stop": "x" * 40_000}, ["stop", "at most 1024 characters", "40000"]),
        ({"stop_token_ids": list(range(1025))}, ["stop_token_ids", "at most 1024", "1025"]),
        ({"ignore_eos": "yes"}, ["ignore_eos", "true or false"]),
        ({"skip_special_tokens": 1}, ["skip_special_tokens", "true or false"]),
        ({"include_stop_str_in_output": None}, ["include_stop_str_in_output", "true or false"]),
    ],
)
def test_invalid_values_name_field_and_range(kwargs: dict[str, object], fragments: list[str]) -> None:
    with pytest.raises(ValueError) as excinfo:
        SamplingParams(**kwargs)
    for fragment in fragments:
        assert fragment in str(excinfo.value)
    assert len(str(excinfo.value)) < 200  # a huge rejected value is not echoed back


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_tokens": None},
        {"temperature": 0},
        {"top_k": -1},
        {"top_k": 1},
        {"top_p": 1e-9},
        {"temperature": 100},
        {"seed": 2**64 - 1},
        {"seed": -(2**63)},
        {"stop": ["s"] * 32},
        {"stop": "x" * 1024},
        {"stop_token_ids": list(range(1024))},
        {"repetition_penalty": 0.01},
        {"presence_penalty": 0.01, "presence_penalty_mode": "multiplicative"},
        {"min_p": 1.0},
        {"min_tokens": 10, "max_tokens": 10},
        {"min_tokens": 10_000, "max_tokens": None},
        {"seed": -3},
        {"repetition_penalty": 10.0},
        {"repetition_penalty": -2.0, "repetition_penalty_mode": "subtractive"},
        {"frequency_penalty": 2.0},
        {"frequency_penalty": 0.5, "frequency_penalty_mode": "multiplicative"},
    ],
)
def test_boundary_values_are_accepted(kwargs: dict[str, object]) -> None:
    SamplingParams(**kwargs)


def test_stop_normalisation() -> None:
    assert SamplingParams(stop="END").stop == ["END"]
    assert SamplingParams(stop=("a", "b")).stop == ["a", "b"]
    assert SamplingParams(stop=[]).stop == []
    assert SamplingParams(stop_token_ids=(5, 6)).stop_token_ids == [5, 6]


def test_numbers_are_stored_as_floats() -> None:
    params = SamplingParams(temperature=1, top_p=1, frequency_penalty=1)
    assert isinstance(params.temperature, float) and isinstance(params.top_p, float)
    assert isinstance(params.frequency_penalty, float)


def test_is_greedy_and_has_penalties() -> None:
    assert SamplingParams(temperature=0.0).is_greedy
    assert not SamplingParams(temperature=0.5).is_greedy
    assert SamplingParams(repetition_penalty=1.1).has_penalties
    assert SamplingParams(presence_penalty=-0.5).has_penalties
    assert not SamplingParams(frequency_penalty=1.0, frequency_penalty_mode="multiplicative").has_penalties
    # 1.0 is neutral only in multiplicative mode.
    assert SamplingParams(repetition_penalty_mode="subtractive").has_penalties
    assert not SamplingParams(repetition_penalty=0.0, repetition_penalty_mode="subtractive").has_penalties
