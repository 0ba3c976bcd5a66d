"""Sibling projections that read the same input, multiplied as one matrix.

HF models call q/k/v of an attention block, and gate/up of a gated MLP, one after another on the
same input tensor. Concatenating their weights into one `[sum(out), in]` matrix and multiplying
once saves two of three (one of two) calls and their per-call overhead, and gives the kernel a
wider matrix to work on (about 10 % less time for the same products with oneDNN at 1 to 64 rows;
for int8, where each call also converts its input, more). Each member module then returns its
slice of the shared product. Per-channel int8 quantization is unchanged by concatenation.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from chatstream.engine.weight_swap import LinearKernel

# Siblings in one parent module that HF models call on the same input tensor.
FUSABLE_GROUPS: tuple[tuple[str, ...], ...] = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


class FusedProduct:
    """One kernel over concatenated weights. The first member called with an input computes every
    member's output; the others take their slice for that same input tensor. A member asking twice,
    or for another input, recomputes."""

    def __init__(self, kernel: LinearKernel, sizes: list[int]) -> None:
        self.kernel = kernel
        self.sizes = sizes
        self._input: torch.Tensor | None = None
        self._parts: tuple[torch.Tensor, ...] = ()
        self._taken: set[int] = set()

    def output(self, x: torch.Tensor, index: int) -> torch.Tensor:
        if self._input is not x or index in self._taken:
            self._parts = self.kernel(x).split(self.sizes, dim=-1)
            self._input, self._taken = x, set()
        self._taken.add(index)
        part = self._parts[index]
        if len(self._taken) == len(self.sizes):  # every member served: hold no tensors between steps
            self._input, self._parts = None, ()
        return part

    def dense_rows(self, index: int) -> torch.Tensor:
        start = sum(self.sizes[:index])
        return self.kernel.dense_weight()[start:start + self.sizes[index]]


class FusedMember:
    """One member of a `FusedProduct` (a `LinearKernel`)."""

    def __init__(self, group: FusedProduct, index: int) -> None:
        self.group = group
        self.index = index

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.group.output(x, self.index)

    def dense_weight(self) -> torch.Tensor:
        return self.group.dense_rows(self.index)


def _fusable(modules: list[nn.Module | None], shared: set[int]) -> bool:
    if any(m is None or not isinstance(m, nn.Linear) for m in modules):
        return False
    first = modules[0]
    return all(
        m.weight.shape[1] == first.weight.shape[1] and m.weight.dtype == first.weight.dtype
        and m.weight.device == first.weight.device
        and id(m.weight) not in shared and (m.bias is None) == (first.bias is None)
        for m in modules  # type: ignore[union-attr]
    )


def sibling_groups(model: nn.Module, candidates: dict[str, nn.Module],
                   shared: set[int]) -> Iterator[list[tuple[str, nn.Module]]]:
    """Groups of `candidates` (qualified name -> linear module) that can be fused, in model order."""
    for parent_name, parent in model.named_modules():
        for group in FUSABLE_GROUPS:
            names = [f"{parent_name}.{n}" if parent_name else n for n in group]
            members = [candidates.get(n) for n in names]
            if _fusable(members, shared) and getattr(parent, group[0], None) is members[0]:
                yield list(zip(names, members))  # type: ignore[arg-type]
