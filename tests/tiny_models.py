"""Tiny random-weight causal LMs, one per supported model family, for fast offline tests.

Owns: a byte-level BPE tokenizer trained in-process on a small built-in corpus, and builders that pair it with a
2-layer, ~64-wide model of each family. Everything is built locally in well under a second (no downloads), weights
are deterministic, and the weight scale is chosen so greedy decoding is not degenerate: outputs differ from prompt
to prompt and logit margins are wide enough that batching/chunking round-off does not flip an argmax.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

EOS_TOKEN = "<|endoftext|>"
TOKENIZER_VOCAB_SIZE = 512
HIDDEN_SIZE = 64
INTERMEDIATE_SIZE = 128
NUM_LAYERS = 2
NUM_HEADS = 4
NUM_KV_HEADS = 2  # GQA (2 query heads per kv head) wherever the family supports it
HEAD_DIM = HIDDEN_SIZE // NUM_HEADS
MAX_POSITIONS = 512
BASE_SEED = 1234

# Weight scale. HF's default init (std 0.02) makes a tiny model's logits nearly flat, so greedy decoding repeats one
# token and near-ties flip under harmless float reordering. std 0.3 gives varied outputs (~15 distinct tokens in 16
# greedy steps) with top-1/top-2 logit gaps >100x the round-off of chunked vs. full prefill; 0.5 saturates attention
# and amplifies round-off, while <= 0.15 makes GPT-2/GPT-NeoX loop on a few tokens.
MATRIX_STD = 0.3
BIAS_STD = 0.2
NORM_WEIGHT_JITTER = 0.2  # norm weights = 1 + noise, so an engine that drops/mixes up a norm weight is caught

FAMILIES: list[str] = ["llama", "mistral", "qwen2", "qwen3", "gpt_neox", "gpt2"]

# Mixed scripts on purpose: Japanese and emoji are multi-byte in UTF-8, so some merges are partial characters and
# detokenization tests see tokens that split a character.
_CORPUS: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog. The dog sleeps in the sun all afternoon.",
    "Once upon a time there was a little engine that served many requests at the same time.",
    "Large language models predict the next token given all of the previous tokens in the context.",
    "A scheduler decides which sequences run in each step, and a cache keeps the keys and values around.",
    "When memory runs out, a request can be preempted and its blocks are freed until it is resumed later.",
    "Prefix caching lets two prompts that start with the same system message share their first blocks.",
    "She sells sea shells by the sea shore, and the shells she sells are surely sea shells.",
    "Numbers like 1, 2, 3, 42, 100 and 2024 appear in text, as do symbols such as #, $, %, & and @.",
    "How are you today? I am fine, thank you! What would you like to talk about this evening?",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))\n",
    "こんにちは、世界。今日はいい天気ですね。",
    "私は猫が好きです。犬も好きです。東京に住んでいます。",
    "日本語のテキストも少し入れておきます。ありがとうございます。",
    "Emoji time: 😀 😃 😄 🎉 🚀 🍣 🐍 ❤️ 👍🏽 and a flag 🇯🇵.",
    "Streaming output should never show a broken character like half of 😀 or half of 日本.",
)


@functools.lru_cache(maxsize=1)
def _trained_tokenizer_json() -> str:
    """Train the byte-level BPE once per process; callers rebuild from JSON so they never share mutable state."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB_SIZE,
        special_tokens=[EOS_TOKEN],
        # The full byte alphabet guarantees any text (including unseen scripts) is encodable.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Repeat the corpus so merge counts are well above 1 and the merge order does not hinge on ties.
    tokenizer.train_from_iterator(list(_CORPUS) * 4, trainer=trainer)
    return tokenizer.to_str()


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A fresh fast tokenizer (byte-level BPE, ~500 tokens) whose EOS and pad token are `EOS_TOKEN`."""
    raw = Tokenizer.from_str(_trained_tokenizer_json())
    return PreTrainedTokenizerFast(tokenizer_object=raw, eos_token=EOS_TOKEN, pad_token=EOS_TOKEN)


def _common_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int | None]:
    return {"bos_token_id": None, "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}


def _llama(vocab: int, ids: dict[str, int | None]) -> PreTrainedModel:
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=HIDDEN_SIZE,
        intermediate_size=INTERMEDIATE_SIZE,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS,
        num_key_value_heads=NUM_KV_HEADS,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=False,
        **ids,
    )
    return LlamaForCausalLM(config)


def _mistral(vocab: int, ids: dict[str, int | None]) -> PreTrainedModel:
    config = MistralConfig(
        vocab_size=vocab,
        hidden_size=HIDDEN_SIZE,
        intermediate_size=INTERMEDIATE_SIZE,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS,
        num_key_value_heads=NUM_KV_HEADS,
        head_dim=HEAD_DIM,  # the config default is 128 regardless of hidden size
        max_position_embeddings=MAX_POSITIONS,
        sliding_window=None,  # full attention: the engine has no sliding-window support to compare against
        tie_word_embeddings=False,
        **ids,
    )
    return MistralForCausalLM(config)


def _qwen2(vocab: int, ids: dict[str, int | None]) -> PreTrainedModel:
    config = Qwen2Config(
        vocab_size=vocab,
        hidden_size=HIDDEN_SIZE,
        intermediate_size=INTERMEDIATE_SIZE,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS,
        num_key_value_heads=NUM_KV_HEADS,
        max_position_embeddings=MAX_POSITIONS,
        use_sliding_window=False,
        tie_word_embeddings=True,  # like the small Qwen2 checkpoints; exercises tied lm_head
        **ids,
    )
    return Qwen2ForCausalLM(config)


def _qwen3(vocab: int, ids: dict[str, int | None]) -> PreTrainedModel:
    config = Qwen3Config(
        vocab_size=vocab,
        hidden_size=HIDDEN_SIZE,
        intermediate_size=INTERMEDIATE_SIZE,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS,
        num_key_value_heads=NUM_KV_HEADS,
        head_dim=HEAD_DIM,  # the config default is 128 regardless of hidden size
        max_position_embeddings=MAX_POSITIONS,
        use_sliding_window=False,
        tie_word_embeddings=False,
        **ids,
    )
    return Qwen3ForCausalLM(config)


def _gpt_neox(vocab: int, ids: dict[str, int | None]) -> PreTrainedModel:
    config = GPTNeoXConfig(
        vocab_size=vocab,
        hidden_size=HIDDEN_SIZE,
        intermediate_size=INTERMEDIATE_SIZE,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS,  # GPT-NeoX has no GQA
        max_position_embeddings=MAX_POSITIONS,
        use_parallel_residual=True,
        # Pythia-style partial rotary: only the first quarter of each head's dims are rotated.
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25},
        tie_word_embeddings=False,
        **ids,
    )
    return GPTNeoXForCausalLM(config)


def _gpt2(vocab: int, ids: dict[str, int | None]) -> PreTrainedModel:
    config = GPT2Config(
        vocab_size=vocab,
        n_embd=HIDDEN_SIZE,
        n_inner=INTERMEDIATE_SIZE,
        n_layer=NUM_LAYERS,
        n_head=NUM_HEADS,  # GPT-2 has no GQA
        n_positions=MAX_POSITIONS,
        **ids,
    )
    return GPT2LMHeadModel(config)


_BUILDERS: dict[str, Callable[[int, dict[str, int | None]], PreTrainedModel]] = {
    "llama": _llama,
    "mistral": _mistral,
    "qwen2": _qwen2,
    "qwen3": _qwen3,
    "gpt_neox": _gpt_neox,
    "gpt2": _gpt2,
}


@torch.no_grad()
def _randomize(model: PreTrainedModel, seed: int) -> None:
    """Overwrite every parameter from a private generator, so weights depend only on (family, seed)."""
    gen = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():  # tied weights are listed once
        if param.dim() >= 2:  # embeddings, linears, GPT-2 Conv1D, lm_head
            param.copy_(torch.randn(param.shape, generator=gen) * MATRIX_STD)
        elif name.endswith("bias"):
            param.copy_(torch.randn(param.shape, generator=gen) * BIAS_STD)
        else:  # RMSNorm / LayerNorm scales
            param.copy_(1.0 + torch.randn(param.shape, generator=gen) * NORM_WEIGHT_JITTER)


def build_tiny_model(
    family: str, seed: int | None = None, attn_implementation: str = "sdpa"
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Build a fresh fp32, eval-mode tiny model of `family` plus its tokenizer.

    Each call returns new objects (an engine may patch the model it is given), yet the weights are identical for the
    same (family, seed), so one instance can serve as the reference for another. The default seed differs per
    family so that architecturally identical families (Llama, Mistral without sliding window) still get different
    weights and hence different test outputs.
    """
    if family not in _BUILDERS:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    if seed is None:
        seed = BASE_SEED + FAMILIES.index(family)
    tokenizer = build_tiny_tokenizer()
    # Module construction draws from the global RNG for its throwaway default init; fork it so building a model
    # never changes the random stream a test sees.
    with torch.random.fork_rng(devices=[]):
        model = _BUILDERS[family](len(tokenizer), _common_ids(tokenizer))
    _randomize(model, seed)
    model.config.dtype = torch.float32
    model = model.to(torch.float32).eval()
    model.set_attn_implementation(attn_implementation)
    # Behave like a real checkpoint in HF `generate` (stop at EOS, pad with EOS); tests that must not stop override it.
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
