"""Replacing a linear layer's dense weight with a faster or smaller form, without a second copy.

Both CPU prepacking (`cpu_weights.py`) and weight-only quantization (`quantization.py`) turn each
`nn.Linear` (and GPT-2's `Conv1D`) of a model into something else that multiplies faster or
takes less memory. Keeping the original dense weight beside it would double the model's memory,
so `swap_weight` removes it:

- the module keeps its class (it becomes a subclass of it, so `isinstance(m, nn.Linear)` holds)
  and its bias; its `weight` parameter is dropped and the `LinearKernel` holds the new form;
- `module.weight` still answers, with a dense tensor rebuilt from the new form on demand (exact
  for prepacking; the dequantized values for int8). `state_dict` writes it too. Nothing in an
  inference forward pass reads it: it is for code that inspects or saves the model;
- a module in training mode, or called with gradients enabled on a weight that requires them,
  computes with that rebuilt dense weight (slow, but right);
- a weight shared with another module (a tied LM head and embedding) is kept, since the other
  module still reads it (an embedding only a few rows per step); only the unshared ones are dropped;
- except where the head's new form can hand back any row exactly (fp32 panels, bf16 tiles): then the embedding
  looks its rows up there too (`serve_embedding_from_head`) and the model keeps that matrix once;
- a weight read from a memory-mapped checkpoint (safetensors loads that way) lives in pages of a
  file mapping that stay resident until the whole mapping goes away; `release_file_pages` hands
  those pages back to the kernel once the new form is built (a later read maps the file again).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from chatstream.engine.mapped_memory import release_file_pages


class RowKernel(Protocol):
    """A `LinearKernel` that can also read rows of its weight exactly (for a tied embedding's lookups)."""

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """`W[ids]`: `[*ids.shape, in]`; IndexError for an id outside `[0, out)`."""
        ...


class LinearKernel(Protocol):
    """The replacement of a dense `[out, in]` weight: how to multiply by it, and how to get it back."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """`x @ W.T` for `x` `[..., in]` → `[..., out]` (no bias)."""
        ...

    def dense_weight(self) -> torch.Tensor:
        """W as a dense `[out, in]` tensor, rebuilt (for inspection, saving and training only)."""
        ...


_KERNEL = "_chatstream_kernel"
_TIED = "_chatstream_tied_weight"


def is_conv1d(module: nn.Module) -> bool:
    # transformers' Conv1D (GPT-2): y = x @ W + b with W stored as [in, out].
    return any(cls.__name__ == "Conv1D" for cls in type(module).__mro__)


def is_swapped(module: nn.Module) -> bool:
    return hasattr(module, _KERNEL)


def linear_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """(qualified name, module) of each not yet swapped `nn.Linear` / `Conv1D` with a 2-D weight."""
    for name, module in model.named_modules():
        if is_swapped(module):
            continue
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
            continue
        if isinstance(module, nn.Linear) or is_conv1d(module):
            yield name, module


def dense_weight_of(module: nn.Module) -> torch.Tensor:
    """The module's weight as `[out, in]`, whatever the module type (a view, not a copy, where possible)."""
    weight = module.weight
    return weight.t() if is_conv1d(module) else weight


def shared_weight_ids(model: nn.Module) -> set[int]:
    """ids of weight tensors that more than one module holds (tied embeddings and LM heads)."""
    seen: dict[int, int] = {}
    for module in model.modules():
        for param in module._parameters.values():
            if param is not None:
                seen[id(param)] = seen.get(id(param), 0) + 1
    return {key for key, count in seen.items() if count > 1}


class _RebuiltWeight:
    """`weight` of a module whose dense weight was dropped: a tensor tied to it since, else the kernel's
    rebuild; `state_dict` writes it as before."""

    @property
    def weight(self) -> torch.Tensor:  # type: ignore[override]
        tied = self.__dict__.get(_TIED)
        return tied if tied is not None else self._rebuilt_weight()

    @weight.setter
    def weight(self, value: torch.Tensor) -> None:  # HF's tie_weights() may assign; keep what is tied
        self.__dict__[_TIED] = value

    def _rebuilt_weight(self) -> torch.Tensor:
        return getattr(self, _KERNEL).dense_weight()

    def _save_to_state_dict(self, destination: dict[str, Any], prefix: str, keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)  # type: ignore[misc]
        weight = self.weight
        destination[prefix + "weight"] = weight if keep_vars else weight.detach()


class _SwappedWeight(_RebuiltWeight):
    """Mixed into the module's own class (see `_swapped_class`): forward through the kernel."""

    def _rebuilt_weight(self) -> torch.Tensor:
        dense = getattr(self, _KERNEL).dense_weight()
        return dense.t().contiguous() if is_conv1d(self) else dense

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel: LinearKernel = getattr(self, _KERNEL)
        bias = self.bias
        if self.training or (torch.is_grad_enabled() and (x.requires_grad or _needs_grad(self))):
            out = F.linear(x, kernel.dense_weight().to(x.dtype), bias)
            return out
        out = kernel(x)
        return out if bias is None else out + bias


def _needs_grad(module: nn.Module) -> bool:
    tied = module.__dict__.get(_TIED)
    return bool(tied is not None and tied.requires_grad)


@functools.cache
def _swapped_class(cls: type, mixin: type | None = None) -> type:
    return type(f"Swapped{cls.__name__}", (mixin or _SwappedWeight, cls), {"__module__": cls.__module__})


def swap_weight(module: nn.Module, kernel: LinearKernel, shared: set[int]) -> None:
    """Make `module` multiply through `kernel` and drop its dense weight (unless `shared` holds it)."""
    weight = module._parameters.pop("weight")
    module.__class__ = _swapped_class(type(module))
    setattr(module, _KERNEL, kernel)
    if id(weight) in shared:
        module.__dict__[_TIED] = weight
    # Building the kernel read every page of the weight. A dropped weight needs none of them; a shared
    # one (the embedding of a tied LM head) only the rows of the tokens it looks up, which a file
    # mapping reads back on demand.
    release_file_pages(weight)


def kernel_of(module: nn.Module) -> LinearKernel | None:
    return getattr(module, _KERNEL, None)


class _RowsFromHead(_RebuiltWeight):
    """Mixed into a plain `nn.Embedding` tied to a swapped LM head (see `serve_embedding_from_head`);
    re-tied by someone (`weight` assigned), it looks up in that tensor from then on."""

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.__dict__.get(_TIED) is not None or self.training:  # type: ignore[attr-defined]
            return F.embedding(ids, self.weight, self.padding_idx)  # type: ignore[attr-defined]
        return getattr(self, _KERNEL).rows(ids)


def serve_embedding_from_head(model: nn.Module) -> bool:
    """Where the LM head is tied to the input embedding and its kernel reads rows exactly (`RowKernel`),
    let the embedding look up there and drop the shared dense matrix; returns whether it did.

    A tied head otherwise keeps the dense matrix beside its own form (113 MB for SmolLM2 in fp32). Only
    a plain `nn.Embedding` (no max_norm) qualifies: subclasses may scale or otherwise change the lookup."""
    head, embedding = model.get_output_embeddings(), model.get_input_embeddings()  # type: ignore[operator]
    kernel = getattr(head, _KERNEL, None)
    tied = head.__dict__.get(_TIED) if head is not None else None
    if (tied is None or not hasattr(kernel, "rows") or type(embedding) is not nn.Embedding
            or embedding.max_norm is not None or embedding._parameters.get("weight") is not tied):
        return False
    weight = embedding._parameters.pop("weight")
    embedding.__class__ = _swapped_class(type(embedding), _RowsFromHead)
    setattr(embedding, _KERNEL, kernel)
    del head.__dict__[_TIED]
    release_file_pages(weight)
    return True
