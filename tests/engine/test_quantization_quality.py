"""Weight-only int8 through the engine, and its quality cost on the real SmolLM2: perplexity on a fixed English text
(tests/data/perplexity_text.txt, written for this test) within 2 % of the fp32 model's."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from chatstream import LLM, SamplingParams
from chatstream.engine.weight_swap import is_swapped

TEXT = Path(__file__).resolve().parents[1] / "data" / "perplexity_text.txt"
MAX_PPL_INCREASE = 0.02


@pytest.mark.parametrize("tiny_family", ["llama", "qwen3", "gpt_neox"])
def test_int8_engine_generates_and_frees_everything(tiny_model) -> None:
    model, tokenizer = tiny_model
    llm = LLM(model, tokenizer, quantization="int8", block_size=8)
    linears = [m for m in model.modules() if is_swapped(m)]
    assert linears and all("weight" not in m._parameters for m in linears)
    prompts = [[5, 6, 7, 8, 9], list(range(20, 60))]
    outs = llm.generate(prompts, SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True))
    assert [len(o.outputs[0].token_ids) for o in outs] == [8, 8]
    bm = llm.engine.block_manager
    assert bm.num_free_blocks == bm.num_blocks


def _perplexity(model: torch.nn.Module, ids: torch.Tensor) -> float:
    with torch.inference_mode():
        logits = model(ids).logits[0, :-1].float()
    nll = torch.nn.functional.cross_entropy(logits, ids[0, 1:])
    return math.exp(float(nll))


@pytest.mark.slow
def test_int8_smollm2_perplexity_within_two_percent_of_fp32() -> None:
    from chatstream.engine.model_weights import prepare_weights
    from chatstream.engine.model_loader import load_model

    model, tokenizer = load_model(None, dtype="float32", device="cpu")
    ids = torch.tensor([tokenizer(TEXT.read_text())["input_ids"]])
    assert ids.shape[1] >= 300, "the text should give a few hundred tokens"
    fp32 = _perplexity(model, ids)
    prepare_weights(model, "int8", prepack=False)
    int8 = _perplexity(model, ids)
    assert fp32 < 100, f"fp32 perplexity {fp32:.2f}: the model or the text is off"
    assert int8 <= fp32 * (1 + MAX_PPL_INCREASE), f"int8 perplexity {int8:.3f} vs fp32 {fp32:.3f}"
