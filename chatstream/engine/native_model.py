"""Llama-family causal LMs held as plain modules: the weights our fused CPU layers run, without
transformers' model classes.

Owns the module tree of a Llama, Mistral or Qwen2 model and what the engine reads from a model
(`config`, `generation_config`, `dtype`, `device`, the embeddings, the rotary tables). The modules
carry transformers' names (`model.layers[i].self_attn.q_proj`, `mlp.gate_proj`,
`input_layernorm`, ...) so that the weight preparation (`model_weights.py`) and `FusedDecoder` read
them as they read transformers' own; there is no forward pass: every step of such a model runs
through `FusedDecoder`.

Why: importing transformers' modeling code costs the process about 90 MiB of resident memory
(`torch._dynamo`, `torch.distributed.tensor`, sympy), as much as the whole KV cache of a dozen
SmolLM2 conversations, for modules whose forward pass the fused layers never call.

The rotary tables are exact for the RoPE variants whose frequencies do not depend on the sequence
length (`STATIC_ROPE_TYPES`); the others stay with transformers' implementation
(`native_loader.py` decides).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# RoPE variants whose inverse frequencies are fixed at load time ("dynamic" and "longrope" change them
# with the sequence length, inside transformers' forward).
STATIC_ROPE_TYPES = frozenset({"default", "linear", "llama3", "yarn"})


def rope_parameters(config: Any) -> dict[str, Any]:
    """The config's RoPE parameters (`rope_type`, `rope_theta`, scaling fields), whichever way it spells them."""
    params = getattr(config, "rope_parameters", None)
    if isinstance(params, dict) and "rope_theta" in params:
        return {"rope_type": "default", **params}
    scaling = getattr(config, "rope_scaling", None) or {}
    rope_type = scaling.get("rope_type", scaling.get("type", "default"))
    return {**scaling, "rope_type": rope_type, "rope_theta": getattr(config, "rope_theta", 10000.0)}


def head_dim_of(config: Any) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


class RMSNorm(nn.Module):
    """Root-mean-square layer norm's weight and epsilon (the fused layers compute it)."""

    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(size), requires_grad=False)
        self.variance_epsilon = float(eps)


class RotaryEmbedding(nn.Module):
    """cos and sin tables of the rotary position embedding, `[1, T, head_dim]` for positions `[1, T]`."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        params = rope_parameters(config)
        dim = head_dim_of(config)
        if params["rope_type"] == "default":
            inv_freq = 1.0 / (float(params["rope_theta"]) ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
            self.attention_scaling = 1.0
        else:
            from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

            inv_freq, self.attention_scaling = ROPE_INIT_FUNCTIONS[params["rope_type"]](config, torch.device("cpu"))
        self.register_buffer("inv_freq", inv_freq.float(), persistent=False)

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # In float32 whatever the model's dtype: positions of thousands times small frequencies.
        freqs = position_ids[..., None].float() * self.inv_freq
        angles = torch.cat((freqs, freqs), dim=-1)
        cos, sin = angles.cos() * self.attention_scaling, angles.sin() * self.attention_scaling
        return cos.to(x.dtype), sin.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, config: Any, qkv_bias: bool, out_bias: bool) -> None:
        super().__init__()
        hidden, head_dim = config.hidden_size, head_dim_of(config)
        heads = config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        self.q_proj = nn.Linear(hidden, heads * head_dim, bias=qkv_bias)
        self.k_proj = nn.Linear(hidden, kv_heads * head_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(hidden, kv_heads * head_dim, bias=qkv_bias)
        self.o_proj = nn.Linear(heads * head_dim, hidden, bias=out_bias)
        self.scaling = head_dim**-0.5


class GatedMLP(nn.Module):
    def __init__(self, config: Any, bias: bool) -> None:
        super().__init__()
        hidden, inner = config.hidden_size, config.intermediate_size
        self.gate_proj = nn.Linear(hidden, inner, bias=bias)
        self.up_proj = nn.Linear(hidden, inner, bias=bias)
        self.down_proj = nn.Linear(inner, hidden, bias=bias)
        self.act_fn = nn.SiLU()


class DecoderLayer(nn.Module):
    def __init__(self, config: Any, biases: tuple[bool, bool, bool]) -> None:
        super().__init__()
        qkv_bias, out_bias, mlp_bias = biases
        self.self_attn = Attention(config, qkv_bias, out_bias)
        self.mlp = GatedMLP(config, mlp_bias)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class DecoderStack(nn.Module):
    """The embedding, the decoder layers and the final norm (transformers' `model.model`)."""

    def __init__(self, config: Any, biases: tuple[bool, bool, bool]) -> None:
        super().__init__()
        # Given a weight, the embedding skips its random init (which would import PyTorch's decompositions on
        # the meta device the model is built on).
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size,
                                         _weight=torch.empty(config.vocab_size, config.hidden_size))
        self.layers = nn.ModuleList(DecoderLayer(config, biases) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


def layer_biases(config: Any) -> tuple[bool, bool, bool]:
    """Which products have a bias: (q/k/v, attention output, MLP), as each family's config says."""
    if config.model_type == "qwen2":
        return True, False, False
    attention_bias = bool(getattr(config, "attention_bias", False))
    return attention_bias, attention_bias, bool(getattr(config, "mlp_bias", False))


class NativeCausalLM(nn.Module):
    """A Llama-family model's weights, laid out as transformers lays them out (see the module docstring).

    Build it under `torch.device("meta")` and fill it with `native_loader.load_native_model`; the rotary
    tables are built on the CPU by `finish`."""

    def __init__(self, config: Any, dtype: torch.dtype, name_or_path: str = "",
                 generation_config: Any = None) -> None:
        super().__init__()
        self.config = config
        self.generation_config = generation_config
        self.name_or_path = name_or_path
        self._dtype = dtype
        self.model = DecoderStack(config, layer_biases(config))
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    def finish(self) -> None:
        """Build the rotary tables (on the CPU: they are computed, not loaded)."""
        with torch.device("cpu"):
            self.model.rotary_emb = RotaryEmbedding(self.config)

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def get_input_embeddings(self) -> nn.Module:
        return self.model.embed_tokens

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def forward(self, *args: object, **kwargs: object) -> None:
        raise NotImplementedError(
            "this model's steps run only through the engine's fused CPU layers; load it with "
            "model_impl='transformers' for a model with a forward pass of its own")
