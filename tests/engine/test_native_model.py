"""Our Llama-family modules (`native_model.py`, `native_loader.py`) and the choice of `model_impl`.

A checkpoint directory loaded into our modules gives transformers' own greedy tokens and log-probs
(of its forward pass over the same directory), in every supported family, tied and untied heads,
sharded files, a config that leaves fields to the family's defaults, and a scaled RoPE. "auto"
picks our modules where they apply and says why not elsewhere; "native" refuses with the reason;
a checkpoint with a tensor too many, too few or of the wrong shape is never loaded half-way, nor
is a config or shard index whose fields have the wrong JSON types. The engine that holds our
modules never imports transformers' modeling code (checked in a fresh process, against
"transformers", which does).
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_models import build_tiny_model
from transformers import AutoModelForCausalLM

from chatstream import LLM, SamplingParams
from chatstream.engine.kv_cache import KVCache, KVCacheSpec
from chatstream.engine.model_runner import ModelRunner
from chatstream.engine.native_model import NativeCausalLM

NATIVE_FAMILIES = ["llama", "mistral", "qwen2"]
TOLERANCE = 1e-4
ENGINE = {"num_kv_blocks": 64, "warmup": False}


def _save(family: str, folder: Path, **save_options: object) -> Path:
    model, tokenizer = build_tiny_model(family)
    model.save_pretrained(folder, **save_options)
    tokenizer.save_pretrained(folder)
    return folder


def _prompts() -> list[list[int]]:
    return [[5, 17, 42, 99, 7, 3], [200, 201, 202], list(range(30, 70))]


@torch.no_grad()
def _reference_logprobs(model: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    return torch.log_softmax(logits, dim=-1)


def _assert_matches_transformers(folder: Path, llm: LLM, max_tokens: int = 12) -> None:
    """Greedy tokens equal transformers' `generate`; each generated and prompt token's log-prob equals its forward's."""
    reference = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True, logprobs=1, prompt_logprobs=1)
    for prompt, out in zip(_prompts(), llm.generate(_prompts(), params)):
        ids = torch.tensor([prompt])
        expected = reference.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                      max_new_tokens=max_tokens, min_new_tokens=max_tokens)
        tokens = out.outputs[0].token_ids
        assert tokens == expected[0, len(prompt):].tolist()
        logprobs = _reference_logprobs(reference, prompt + tokens)
        for i, entry in enumerate(out.outputs[0].logprobs or []):
            assert abs(entry.logprob - float(logprobs[len(prompt) - 1 + i, tokens[i]])) < TOLERANCE
        assert out.prompt_logprobs is not None and out.prompt_logprobs[0] is None
        for p in range(1, len(prompt)):
            assert abs(out.prompt_logprobs[p].logprob - float(logprobs[p - 1, prompt[p]])) < TOLERANCE


@pytest.mark.parametrize("family", NATIVE_FAMILIES)
def test_our_modules_give_transformers_tokens_and_logprobs(family: str, tmp_path: Path) -> None:
    folder = _save(family, tmp_path)
    llm = LLM(str(folder), model_impl="native", **ENGINE)
    assert isinstance(llm.engine.model, NativeCausalLM)
    _assert_matches_transformers(folder, llm)


def test_auto_picks_our_modules_for_a_llama_directory_and_transformers_when_told(tmp_path: Path) -> None:
    folder = _save("llama", tmp_path)
    assert isinstance(LLM(str(folder), **ENGINE).engine.model, NativeCausalLM)
    held = LLM(str(folder), model_impl="transformers", **ENGINE).engine.model
    assert type(held).__name__ == "LlamaForCausalLM"


def test_bf16_on_our_modules_gives_the_tokens_of_transformers_classes_in_bf16(tmp_path: Path) -> None:
    folder = _save("qwen2", tmp_path)
    params = SamplingParams(max_tokens=12, temperature=0.0, ignore_eos=True)
    ours = LLM(str(folder), model_impl="native", dtype="bfloat16", **ENGINE)
    theirs = LLM(str(folder), model_impl="transformers", dtype="bfloat16", **ENGINE)
    assert ours.engine.model.dtype == torch.bfloat16 == theirs.engine.model.dtype
    for a, b in zip(ours.generate(_prompts(), params), theirs.generate(_prompts(), params)):
        assert a.outputs[0].token_ids == b.outputs[0].token_ids


def test_a_sharded_checkpoint_loads_whole(tmp_path: Path) -> None:
    folder = _save("llama", tmp_path, max_shard_size="100KB")
    assert (folder / "model.safetensors.index.json").is_file() and not (folder / "model.safetensors").exists()
    llm = LLM(str(folder), model_impl="native", **ENGINE)
    _assert_matches_transformers(folder, llm, max_tokens=6)


def test_a_config_that_leaves_fields_to_the_family_defaults_is_read_by_the_family_class(tmp_path: Path) -> None:
    folder = _save("llama", tmp_path)
    config = json.loads((folder / "config.json").read_text())
    assert config.pop("rms_norm_eps") == 1e-6  # LlamaConfig's default, which the base config class does not know
    (folder / "config.json").write_text(json.dumps(config))
    llm = LLM(str(folder), model_impl="native", **ENGINE)
    assert llm.engine.model.model.norm.variance_epsilon == 1e-6
    _assert_matches_transformers(folder, llm, max_tokens=6)


def test_a_llama3_scaled_rope_matches_transformers(tmp_path: Path) -> None:
    model, tokenizer = build_tiny_model("llama")
    model.config.rope_parameters = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
                                    "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                    "original_max_position_embeddings": 64}
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    llm = LLM(str(tmp_path), model_impl="native", **ENGINE)
    _assert_matches_transformers(tmp_path, llm)


def test_auto_falls_back_to_transformers_and_says_why(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = _save("gpt2", tmp_path)
    with caplog.at_level(logging.INFO, logger="chatstream.engine"):
        held = LLM(str(folder), **ENGINE).engine.model
    assert type(held).__name__ == "GPT2LMHeadModel"
    assert "loads with transformers' model classes: model type 'gpt2' is not one of" in caplog.text
    with pytest.raises(ValueError, match="model_impl='native' cannot load .*model type 'gpt2'"):
        LLM(str(folder), model_impl="native", **ENGINE)


@pytest.mark.parametrize(("options", "reason"), [
    ({"cpu_fused_layers": False}, "the engine's fused CPU layers are turned off"),
    ({"dtype": "float16"}, "the fused layers run fp32 or bf16, not float16"),
])
def test_what_our_modules_need_from_the_engine(tmp_path: Path, options: dict, reason: str) -> None:
    folder = _save("llama", tmp_path)
    assert type(LLM(str(folder), **ENGINE, **options).engine.model).__name__ == "LlamaForCausalLM"
    with pytest.raises(ValueError, match=reason):
        LLM(str(folder), model_impl="native", **ENGINE, **options)


def test_model_impl_takes_only_its_three_values_and_native_needs_a_directory() -> None:
    with pytest.raises(ValueError, match="model_impl must be one of auto, native, transformers, got 'vllm'"):
        LLM(None, model_impl="vllm")
    model, tokenizer = build_tiny_model("llama")
    with pytest.raises(ValueError, match="an already loaded model is used as it is"):
        LLM(model, tokenizer, model_impl="native", **ENGINE)


def _rewrite_tensors(folder: Path, change) -> None:
    tensors = load_file(folder / "model.safetensors")
    change(tensors)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


@pytest.mark.parametrize(("change", "message"), [
    (lambda t: t.__setitem__("model.layers.0.self_attn.q_norm.weight", torch.ones(16)),
     "tensors a llama model does not use: model.layers.0.self_attn.q_norm.weight"),
    (lambda t: t.pop("model.norm.weight"), "the checkpoint lacks model.norm.weight"),
    (lambda t: t.__setitem__("model.layers.1.mlp.up_proj.weight", torch.ones(128, 32)),
     r"model.layers.1.mlp.up_proj.weight in model.safetensors has shape \(128, 32\), the config says \(128, 64\)"),
])
def test_a_checkpoint_that_is_not_the_configured_model_is_refused(tmp_path: Path, change, message: str,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    folder = _save("llama", tmp_path)
    _rewrite_tensors(folder, change)
    with pytest.raises(ValueError, match=message):
        LLM(str(folder), model_impl="native", **ENGINE)
    with caplog.at_level(logging.INFO, logger="chatstream.engine"):
        try:
            LLM(str(folder), **ENGINE)  # auto hands it to transformers, which loads it its own way or refuses it
        except Exception:  # noqa: BLE001 - transformers' verdict is not under test, the hand-over is
            pass
    assert re.search("loads with transformers' model classes: .*" + message, caplog.text)


def test_our_model_has_no_forward_pass_and_needs_the_fused_layers(tmp_path: Path) -> None:
    llm = LLM(str(_save("llama", tmp_path)), **ENGINE)
    model = llm.engine.model
    with pytest.raises(NotImplementedError, match="model_impl='transformers'"):
        model(torch.tensor([[1, 2]]))
    cache = KVCache(KVCacheSpec.from_config(model.config, model.dtype), 4, 16, model.device)
    with pytest.raises(ValueError, match="runs only through the fused CPU layers"):
        ModelRunner(model, cache, use_cpu_kernel=False)


_IMPORTS_CHECK = """
import sys
from chatstream import LLM, SamplingParams
llm = LLM(sys.argv[1], model_impl=sys.argv[2], num_kv_blocks=16, warmup=False)
out = llm.generate([[5, 6, 7]], SamplingParams(max_tokens=3, temperature=0.0, ignore_eos=True))
assert len(out[0].outputs[0].token_ids) == 3
print(sorted(m for m in ("transformers.modeling_utils", "torch.distributed.tensor", "sympy") if m in sys.modules))
"""


@pytest.mark.parametrize(("model_impl", "imported"), [
    ("native", "[]"),
    ("transformers", "['sympy', 'torch.distributed.tensor', 'transformers.modeling_utils']"),
])
def test_our_modules_spare_the_process_transformers_modeling_code(tmp_path: Path, model_impl: str,
                                                                  imported: str) -> None:
    folder = _save("llama", tmp_path)
    done = subprocess.run([sys.executable, "-c", _IMPORTS_CHECK, str(folder), model_impl], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == imported


@pytest.mark.parametrize(("edit", "message"), [
    ({"rope_scaling": [1, 2]}, "rope_scaling must be an object or null, got list"),
    ({"rope_parameters": "default"}, "rope_parameters must be an object or null, got str"),
    ({"hidden_size": "64"}, "hidden_size must be a positive integer, got '64'"),
    ({"num_hidden_layers": -2}, "num_hidden_layers must be a positive integer, got -2"),
    ({"vocab_size": True}, "vocab_size must be a positive integer, got True"),
    ({"rms_norm_eps": "tiny"}, "rms_norm_eps must be a number >= 0, got 'tiny'"),
])
def test_a_hand_edited_config_with_wrong_types_is_refused_by_name(tmp_path: Path, edit: dict, message: str) -> None:
    from chatstream.engine.native_loader import NativeLoadError, read_config

    folder = _save("llama", tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **edit}))
    with pytest.raises(NativeLoadError, match=re.escape(message)):
        read_config(folder)


@pytest.mark.parametrize("weight_map", [["model-00001.safetensors"], {}, {"a": 3}, {"a": "../elsewhere.safetensors"},
                                        {"a": ".."}])
def test_a_shard_index_that_names_no_shards_beside_it_is_refused(tmp_path: Path, weight_map: object) -> None:
    from chatstream.engine.native_loader import NativeLoadError, checkpoint_files

    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(NativeLoadError, match="is not a safetensors index"):
        checkpoint_files(tmp_path)
