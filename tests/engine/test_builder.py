"""The engine builder: options split into one config, a given model used where it is, a runner
plugged in instead of weights, and the seed; and the start-up values the engine takes from its runner."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from tiny_models import build_tiny_model

from chatstream.engine.builder import build_engine_core, engine_config
from chatstream.engine.config import EngineConfig
from chatstream.engine.engine_core import EngineCore
from chatstream.engine.hf_step_runner import HFStepRunner
from chatstream.engine.request import Request
from chatstream.engine.sampling_params import SamplingParams
from chatstream.engine.scheduler import SchedulerOutput
from chatstream.engine.step_runner import RunnerSource


def test_options_split_into_the_config_and_the_load_options() -> None:
    config, load = engine_config({"num_kv_blocks": 8, "block_size": 4, "dtype": "float32", "device": "cpu"})
    assert config == EngineConfig(num_kv_blocks=8, block_size=4) and load == {"dtype": "float32", "device": "cpu"}
    with pytest.raises(TypeError, match=r"unknown ChatStream option\(s\): colour, flavour"):
        engine_config({"flavour": 1, "colour": 2}, owner="ChatStream")
    # A facade that runs N generations at once gets an engine that batches at least N...
    assert engine_config({}, min_num_seqs=100)[0].max_num_seqs == 100
    assert engine_config({}, min_num_seqs=2)[0].max_num_seqs == EngineConfig.max_num_seqs
    # ...unless the caller chose max_num_seqs.
    assert engine_config({"max_num_seqs": 3}, min_num_seqs=100)[0].max_num_seqs == 3


@pytest.mark.parametrize("field", ["cpu_fused_layers", "cpu_attention_kernel", "enable_prefix_caching", "warmup"])
@pytest.mark.parametrize("value", ["false", "False", 0, 1, None])
def test_a_switch_takes_only_true_or_false(field: str, value: object) -> None:
    # "false" from a command line would otherwise count as True.
    with pytest.raises(ValueError, match=f"{field} must be True or False, got {value!r}"):
        EngineConfig(**{field: value})
    assert getattr(EngineConfig(**{field: False}), field) is False


def test_a_given_model_is_served_where_it_is_with_a_seeded_sampler(caplog: pytest.LogCaptureFixture) -> None:
    model, tokenizer = build_tiny_model("llama")
    with caplog.at_level(logging.INFO, logger="chatstream.engine"):
        core = build_engine_core(model, tokenizer, {"num_kv_blocks": 16, "block_size": 4}, device="meta", seed=7)
    assert type(core) is EngineCore and isinstance(core.runner, HFStepRunner)
    assert core.model is model and core.device == model.device == torch.device("cpu")
    assert "it stays there" in caplog.text
    assert core.kv_cache.num_blocks == 16 and core.max_model_len == 16 * 4
    assert core.sampler.generator.initial_seed() == 7


class ConstantRunner:
    """A runner with no model: every request's next token is `token_id`; counts its calls."""

    def __init__(self, config: EngineConfig, token_id: int, vocab_size: int = 32, model_len: int = 40) -> None:
        self.token_id, self.vocab_size, self.model_len = token_id, vocab_size, model_len
        self.eos_token_ids = frozenset({0})
        self.kv_cache = type("Blocks", (), {"num_blocks": 4, "block_size": config.block_size, "size_bytes": 0})()
        self.device = torch.device("cpu")
        self.admitted: list[str] = []
        self.released: list[str] = []

    def execute(self, output: SchedulerOutput) -> tuple[torch.Tensor, list[Request]]:
        sampled = [s.request for s in output.scheduled if s.completes_sequence]
        logits = torch.full((len(sampled), self.vocab_size), -math.inf)
        logits[:, self.token_id] = 0.0
        return logits, sampled

    def admit(self, request: Request) -> None:
        if request.prompt_token_ids[0] == 13:
            raise ValueError("13 is refused by this runner")
        request.max_tokens = min(request.max_tokens, 3)
        self.admitted.append(request.request_id)

    def release(self, request: Request) -> None:
        self.released.append(request.request_id)

    def describe(self) -> str:
        return "a constant runner"


class ConstantSource:
    """A model that brings its own runner (a `RunnerSource`), as the Transformer Mock's replay does."""

    def __init__(self, token_id: int) -> None:
        self.token_id = token_id

    def default_tokenizer(self) -> None:
        return None

    def step_runner(self, tokenizer: object, config: EngineConfig) -> ConstantRunner:
        return ConstantRunner(config, self.token_id)


def test_a_runner_source_plugs_a_runner_into_the_plain_engine() -> None:
    source = ConstantSource(token_id=5)
    assert isinstance(source, RunnerSource)
    core = build_engine_core(source, None, {"block_size": 8, "max_model_len": 24, "dtype": "float16"})
    runner = core.runner
    assert type(core) is EngineCore and isinstance(runner, ConstantRunner) and core.model is source
    # The engine is sized by what its runner says: 4 blocks of 8 tokens cap the runner's 40 tokens at 32.
    assert core.vocab_size == 32 and core.eos_token_ids == {0} and core.max_model_len == 32
    assert core.block_manager.num_blocks == 4 and core.tokenizer is None

    with pytest.raises(ValueError, match="13 is refused"):
        core.add_request("refused", [13, 1, 2])
    assert not core.has_unfinished_requests() and "refused" not in core.requests

    core.add_request("a", [1, 2, 3], SamplingParams(max_tokens=10))
    deltas = []
    while core.has_unfinished_requests():
        deltas += core.step()
    assert [t for d in deltas for t in d.new_token_ids] == [5, 5, 5]  # capped at 3 by the runner's admit
    assert deltas[-1].finish_reason == "length"
    assert runner.admitted == runner.released == ["a"]
    assert core.block_manager.num_free_blocks == 4
