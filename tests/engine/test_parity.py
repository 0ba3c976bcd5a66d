"""Model-family parity: greedy outputs of `LLM.generate` equal HF `model.generate`, token for token.

For every tiny family (tests/tiny_models.py) one batched `LLM.generate` call over prompts of mixed lengths is
compared with HF greedy decoding run one prompt at a time, under engine settings that force the hard paths:
preemption (a KV cache barely bigger than one sequence), chunked prefill (a 16-token step budget), and prefix-cache
hits (shared prefixes, generated twice). After every call all KV blocks must be free again.

A tiny model can have near-ties (top-1 and top-2 logits within float round-off of each other); there either token
is a correct greedy choice and the continuations diverge, so comparison stops at the first such step (after
checking the engine picked one of the two). The seeded prompts make this rare and deterministic.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from chatstream import LLM, SamplingParams
from chatstream.engine.outputs import RequestOutput

MAX_TOKENS = 16
NUM_PROMPTS = 16
PROMPT_SEED = 20240611
# Round-off between batched/chunked/paged and HF's own computation is ~1e-5 in these fp32 models (logits ~10);
# margins below this could legitimately flip.
NEAR_TIE_MARGIN = 1e-3
# Lengths cover 1 token, block-size boundaries (4/8/16 and +-1) and long prompts that need several prefill chunks.
PROMPT_LENGTHS = (1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 48, 64, 97, 120)
PREFIX_LEN = 40  # shared by all prefix-cache prompts: 5 full blocks of 8
PREFIX_BLOCK_SIZE = 8
PREEMPT_BLOCK_SIZE = 8

Factory = Callable[[str], tuple[PreTrainedModel, PreTrainedTokenizerBase]]


@dataclass
class Reference:
    """HF greedy continuation of one prompt, with the per-step top-2 candidates and their logit gap."""

    token_ids: list[int]
    top2: list[tuple[int, int]]
    margins: list[float]


def _content_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    # Special tokens are left out of prompts so that no engine-side special-token handling can interfere.
    special = set(tokenizer.all_special_ids)
    return [i for i in range(len(tokenizer)) if i not in special]


def _mixed_prompts(tokenizer: PreTrainedTokenizerBase) -> list[list[int]]:
    assert len(PROMPT_LENGTHS) == NUM_PROMPTS
    rng = random.Random(PROMPT_SEED)
    ids = _content_ids(tokenizer)
    lengths = list(PROMPT_LENGTHS)
    rng.shuffle(lengths)  # so arrival order is not sorted by length
    return [[rng.choice(ids) for _ in range(n)] for n in lengths]


def _prefix_prompts(tokenizer: PreTrainedTokenizerBase) -> list[list[int]]:
    rng = random.Random(PROMPT_SEED + 1)
    ids = _content_ids(tokenizer)
    prefix = [rng.choice(ids) for _ in range(PREFIX_LEN)]
    # Suffix 0 makes one prompt exactly the prefix (all of it cacheable on the second run: the engine must still
    # compute the last token); 8 and 16 end on a block boundary.
    suffix_lengths = [0, 1, 2, 3, 5, 7, 8, 9, 12, 15, 16, 17, 20, 24, 30, 35]
    assert len(suffix_lengths) == NUM_PROMPTS
    return [prefix + [rng.choice(ids) for _ in range(n)] for n in suffix_lengths]


@torch.no_grad()
def _hf_greedy(model: PreTrainedModel, prompts: list[list[int]], max_tokens: int) -> list[Reference]:
    """HF reference, one prompt at a time (no padding anywhere), never stopping early.

    EOS is disabled instead of using `min_new_tokens`: min_new_tokens works by masking EOS logits, which changes
    the greedy choice whenever EOS is the argmax, whereas the engine's `ignore_eos` only skips the stop check.
    """
    # HF falls back to the model's generation_config for EOS when the passed config says None, so clear it there;
    # this instance is private to the reference.
    model.generation_config.eos_token_id = None
    config = GenerationConfig(
        do_sample=False,
        max_new_tokens=max_tokens,
        eos_token_id=None,
        pad_token_id=model.generation_config.pad_token_id,
        output_scores=True,
        return_dict_in_generate=True,
    )
    refs = []
    for prompt in prompts:
        input_ids = torch.tensor([prompt], device=model.device)
        out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), generation_config=config)
        new = out.sequences[0, len(prompt):].tolist()
        assert len(new) == max_tokens, "HF reference stopped early; EOS handling is wrong"
        top = [scores[0].float().topk(2) for scores in out.scores]
        refs.append(
            Reference(
                token_ids=new,
                top2=[(int(t.indices[0]), int(t.indices[1])) for t in top],
                margins=[float(t.values[0] - t.values[1]) for t in top],
            )
        )
    return refs


@pytest.fixture(scope="module", autouse=True)
def _single_torch_thread() -> Iterator[None]:
    """Run this module on one intra-op thread: 64-wide models gain nothing from more, and on a small shared machine
    two OpenMP threads competing with other processes made these tests ~20x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reference_cache() -> dict[tuple[str, str], tuple[list[list[int]], list[Reference]]]:
    """References are shared by all engine variants of a family: (family, prompt set) -> (prompts, references)."""
    return {}


def _prompts_and_refs(
    cache: dict[tuple[str, str], tuple[list[list[int]], list[Reference]]], factory: Factory, family: str, kind: str
) -> tuple[list[list[int]], list[Reference]]:
    key = (family, kind)
    if key not in cache:
        # A separate instance from the engine's (same weights): the engine switches its model to its own attention.
        model, tokenizer = factory(family)
        prompts = _mixed_prompts(tokenizer) if kind == "mixed" else _prefix_prompts(tokenizer)
        cache[key] = (prompts, _hf_greedy(model, prompts, MAX_TOKENS))
    return cache[key]


def _assert_parity(got: list[list[int]], refs: list[Reference], prompts: list[list[int]], label: str) -> None:
    assert len(got) == len(refs), f"{label}: {len(got)} outputs for {len(refs)} prompts"
    for i, (tokens, ref) in enumerate(zip(got, refs)):
        where = f"{label}: prompt {i} ({len(prompts[i])} tokens)"
        assert len(tokens) == len(ref.token_ids), f"{where}: {len(tokens)} tokens, expected {len(ref.token_ids)}"
        tie = next((s for s, m in enumerate(ref.margins) if m < NEAR_TIE_MARGIN), len(tokens))
        if tokens[:tie] != ref.token_ids[:tie]:
            step = next(s for s in range(tie) if tokens[s] != ref.token_ids[s])
            pytest.fail(
                f"{where}: first mismatch at output step {step}: engine {tokens[: step + 1]} vs HF "
                f"{ref.token_ids[: step + 1]} (HF top-2 gap there {ref.margins[step]:.4f})"
            )
        if tie < len(tokens):
            assert tokens[tie] in ref.top2[tie], f"{where}: step {tie} is a near-tie, engine picked neither candidate"


def _assert_all_blocks_free(llm: LLM, label: str) -> None:
    # Prefix-cached blocks with no owner count as free (evictable) in the block manager.
    bm = llm.engine.block_manager
    assert bm.num_free_blocks == bm.num_blocks, f"{label}: {bm.num_blocks - bm.num_free_blocks} KV blocks leaked"


def _generate(llm: LLM, prompts: list[list[int]]) -> list[RequestOutput]:
    params = SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, ignore_eos=True)
    return llm.generate(prompts, params)


def _blocks_for_longest(prompts: list[list[int]], block_size: int) -> int:
    return -(-(max(len(p) for p in prompts) + MAX_TOKENS) // block_size)


VARIANTS = ["default", "preemption", "chunked_prefill", "preemption_chunked_tiny_blocks", "sdpa_decode"]


def _variant_options(variant: str, prompts: list[list[int]]) -> dict[str, Any]:
    if variant == "default":
        return {}
    if variant == "preemption":
        # Room for the longest sequence plus one block: 16 concurrent requests cannot all fit, so the scheduler
        # must preempt (and later resume) running requests.
        need = _blocks_for_longest(prompts, PREEMPT_BLOCK_SIZE)
        return {"block_size": PREEMPT_BLOCK_SIZE, "num_kv_blocks": need + 1}
    if variant == "chunked_prefill":
        # Smaller than most prompts, so prompts are prefilled over several steps alongside other requests' decodes.
        return {"max_num_batched_tokens": 16}
    if variant == "sdpa_decode":
        # The portable path: decodes through gathered blocks + SDPA instead of the compiled CPU kernel.
        return {"cpu_attention_kernel": False, "cpu_prepack_weights": False}
    if variant == "preemption_chunked_tiny_blocks":
        need = _blocks_for_longest(prompts, 4)
        return {"block_size": 4, "num_kv_blocks": need + 2, "max_num_batched_tokens": 16}
    raise AssertionError(variant)


@pytest.mark.parametrize("variant", VARIANTS)
def test_greedy_parity_mixed_lengths(
    variant: str, tiny_family: str, tiny_model_factory: Factory, reference_cache: dict
) -> None:
    prompts, refs = _prompts_and_refs(reference_cache, tiny_model_factory, tiny_family, "mixed")
    options = _variant_options(variant, prompts)
    model, tokenizer = tiny_model_factory(tiny_family)
    llm = LLM(model, tokenizer, **options)

    outs = _generate(llm, prompts)

    label = f"{tiny_family}/{variant}"
    _assert_parity([o.outputs[0].token_ids for o in outs], refs, prompts, label)
    assert all(o.outputs[0].finish_reason == "length" for o in outs), label
    _assert_all_blocks_free(llm, label)
    if variant.startswith("preemption"):
        # TODO(lead): `scheduler.num_preemptions` is not in the contract; keep this name (or tell us the real one)
        # so this check cannot silently stop asserting anything.
        preemptions = getattr(getattr(llm.engine, "scheduler", None), "num_preemptions", None)
        if preemptions is None:
            warnings.warn(f"{label}: engine exposes no scheduler.num_preemptions; preemption not verified")
        else:
            assert preemptions > 0, f"{label}: the KV budget was meant to force preemption but none happened"


def test_greedy_parity_prefix_cache_hits(tiny_family: str, tiny_model_factory: Factory, reference_cache: dict) -> None:
    prompts, refs = _prompts_and_refs(reference_cache, tiny_model_factory, tiny_family, "prefix")
    model, tokenizer = tiny_model_factory(tiny_family)
    # Plenty of blocks, so nothing cached by the first call is evicted before the second.
    llm = LLM(model, tokenizer, block_size=PREFIX_BLOCK_SIZE, num_kv_blocks=512, enable_prefix_caching=True)

    first = _generate(llm, prompts)
    _assert_parity([o.outputs[0].token_ids for o in first], refs, prompts, f"{tiny_family}/prefix first call")
    _assert_all_blocks_free(llm, f"{tiny_family}/prefix first call")

    second = _generate(llm, prompts)
    _assert_parity([o.outputs[0].token_ids for o in second], refs, prompts, f"{tiny_family}/prefix second call")
    _assert_all_blocks_free(llm, f"{tiny_family}/prefix second call")
    assert [o.outputs[0].token_ids for o in second] == [o.outputs[0].token_ids for o in first]
    # Every prompt is at least PREFIX_LEN tokens (several full blocks), all computed by the first call.
    cached = [o.num_cached_tokens for o in second]
    assert all(c > 0 for c in cached), f"{tiny_family}: second call's num_cached_tokens {cached}"
