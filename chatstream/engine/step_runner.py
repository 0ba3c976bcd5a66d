"""What computes a step's logits, as the engine sees it: the `StepRunner` contract.

`EngineCore` is the same whatever stands behind the logits: scheduler, block manager, sampler,
detokenizer and stop checks. Only the runner differs. `HFStepRunner` runs a HuggingFace model over
our paged KV cache; the Transformer Mock's `ReplayRunner` (`chatstream.mock.replay`) reads a
recording and needs no weights. A runner is built before its engine and tells it, once, what it
needs to size everything around it (vocabulary, EOS ids, context length, KV blocks).

A model object that brings its own runner instead of weights is a `RunnerSource`; the engine
builder recognises it by this protocol alone, so the engine never imports a plug-in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch
    from transformers import PreTrainedTokenizerBase

    from chatstream.engine.config import EngineConfig
    from chatstream.engine.request import Request
    from chatstream.engine.scheduler import SchedulerOutput


class PromptLogits(NamedTuple):
    """A request's logits at prompt positions `start ..< start + len(logits)`: row i predicts prompt
    token `start + i + 1` (for prompt log-probs)."""

    request: Request
    start: int
    logits: torch.Tensor


class StepLogits(NamedTuple):
    """What `StepRunner.execute` returns: `logits` [N, V] float32 of the N `sampled` requests (those
    that reach their last known token in this step, in order), and `prompt_logits` for requests whose
    `needs_prompt_logits` is True (a runner that never computes them leaves it empty)."""

    logits: torch.Tensor
    sampled: list[Request]
    prompt_logits: Sequence[PromptLogits] = ()


class KVCacheSize(Protocol):
    """How many KV blocks a runner holds, of how many tokens, in how many bytes."""

    @property
    def num_blocks(self) -> int: ...

    @property
    def block_size(self) -> int: ...

    @property
    def size_bytes(self) -> int: ...


class StepRunner(Protocol):
    """Turns each step's `SchedulerOutput` into logits.

    vocab_size: the logits' width. eos_token_ids: the ids that end a request (unless ignore_eos).
    model_len: the longest sequence the runner can attend over (the engine further caps it to
        what the KV cache holds). kv_cache: its blocks (`num_blocks` sizes the block manager).
    device: where the logits are.

    execute(output): a `StepLogits` (or a plain `(logits, sampled)` pair from a runner that
        computes no prompt logits): float32 logits `[N, V]` and the N requests that reach their
        last known token in this step, in the same order. Only the engine thread calls it.
    admit(request): the request is about to be queued; raise ValueError to refuse it (nothing is
        queued then), or lower `request.max_tokens`. release(request): it finished or was aborted.
    describe(): one line for the start-up log.
    """

    vocab_size: int
    eos_token_ids: frozenset[int]
    model_len: int

    @property
    def kv_cache(self) -> KVCacheSize: ...

    @property
    def device(self) -> torch.device: ...

    def execute(self, output: SchedulerOutput) -> StepLogits | tuple[torch.Tensor, list[Request]]: ...

    def admit(self, request: Request) -> None: ...

    def release(self, request: Request) -> None: ...

    def describe(self) -> str: ...


@runtime_checkable
class RunnerSource(Protocol):
    """A model that brings its own `StepRunner` instead of weights (e.g. a recording to replay).

    default_tokenizer(): the tokenizer to use when the caller gives none.
    step_runner(tokenizer, config): the runner for one engine with `config`.
    """

    def default_tokenizer(self) -> PreTrainedTokenizerBase | None: ...

    def step_runner(self, tokenizer: PreTrainedTokenizerBase | None, config: EngineConfig) -> StepRunner: ...
