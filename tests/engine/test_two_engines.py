"""Two engines in one process: each stepped by its own thread, neither sees the other's attention metadata.

Two different tiny models run side by side (chunked prefill and preemption forced on both), each must equal HF
greedy token for token (the parity rules of test_parity.py); meanwhile the user runs plain HF forward passes of a
third model in another thread, and those must equal what the same pass gives when nothing else runs.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
import torch
from test_parity import MAX_TOKENS, _assert_parity, _blocks_for_longest, _hf_greedy, _mixed_prompts
from tiny_models import build_tiny_model

from chatstream import LLM, SamplingParams
from chatstream.engine.config import EngineConfig
from chatstream.engine.async_engine import AsyncEngine
from chatstream.engine.engine_core import EngineCore
from chatstream.engine.paged_attention import ATTN_IMPLEMENTATION

ENGINE_FAMILIES = ("llama", "gpt2")
USER_FAMILY = "qwen2"
GREEDY = SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS, ignore_eos=True)


@pytest.fixture(scope="module", autouse=True)
def _single_torch_thread() -> Iterator[None]:
    # Three threads of model code share two cores; one intra-op thread each keeps them from fighting.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _references() -> dict[str, tuple[list[list[int]], list]]:
    refs = {}
    for family in ENGINE_FAMILIES:
        model, tokenizer = build_tiny_model(family)
        prompts = _mixed_prompts(tokenizer)
        refs[family] = (prompts, _hf_greedy(model, prompts, MAX_TOKENS))
    return refs


def _tight_engine_options(prompts: list[list[int]]) -> dict[str, int]:
    # 4-token blocks, barely more than the longest sequence needs, and a 16-token step budget: requests are
    # preempted and resumed, and long prompts are prefilled in chunks beside other requests' decodes.
    return {"block_size": 4, "num_kv_blocks": _blocks_for_longest(prompts, 4) + 2, "max_num_batched_tokens": 16}


class UserForwardPasses(threading.Thread):
    """The user's own HF forward passes of a third model, repeated until told to stop.

    The model is switched to the engine's attention implementation on purpose: a model that was handed to an
    engine keeps it, and outside a step it must behave exactly like SDPA.
    """

    def __init__(self, stop: threading.Event) -> None:
        super().__init__(name="user-forward", daemon=True)
        self.model, tokenizer = build_tiny_model(USER_FAMILY)
        self.input_ids = torch.tensor([tokenizer.encode("The quick brown fox jumps over the lazy dog.")])
        self.expected = self._forward()  # alone, before any engine exists
        self.model.set_attn_implementation(ATTN_IMPLEMENTATION)
        assert torch.equal(self._forward(), self.expected)
        self.stop = stop
        self.passes = 0
        self.mismatches = 0
        self.error: BaseException | None = None

    @torch.no_grad()
    def _forward(self) -> torch.Tensor:
        return self.model(input_ids=self.input_ids, use_cache=False).logits

    def run(self) -> None:
        try:
            while True:
                if not torch.allclose(self._forward(), self.expected, atol=1e-5, rtol=0):
                    self.mismatches += 1
                self.passes += 1
                if self.stop.is_set():
                    return
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def test_two_engines_in_two_threads_each_equal_hf_greedy_and_leave_user_passes_alone() -> None:
    refs = _references()
    engines_done = threading.Event()
    user = UserForwardPasses(engines_done)
    llms = {}
    for family in ENGINE_FAMILIES:
        model, tokenizer = build_tiny_model(family)
        llms[family] = LLM(model, tokenizer, **_tight_engine_options(refs[family][0]))
    results: dict[str, list[list[int]]] = {}
    errors: dict[str, BaseException] = {}
    start = threading.Barrier(len(ENGINE_FAMILIES) + 1)

    def drive(family: str) -> None:
        start.wait()
        try:
            outs = llms[family].generate(refs[family][0], GREEDY)
            results[family] = [o.outputs[0].token_ids for o in outs]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors[family] = exc

    threads = [threading.Thread(target=drive, args=(f,), name=f"engine-{f}") for f in ENGINE_FAMILIES]
    for t in threads:
        t.start()
    user.start()
    start.wait()
    for t in threads:
        t.join()
    engines_done.set()
    user.join()

    assert not errors, errors
    for family in ENGINE_FAMILIES:
        prompts, family_refs = refs[family]
        _assert_parity(results[family], family_refs, prompts, f"{family} beside another engine")
        core = llms[family].engine
        assert core.scheduler.num_preemptions > 0, f"{family}: the tight KV budget was meant to force preemption"
        assert core.block_manager.num_free_blocks == core.block_manager.num_blocks
    assert user.error is None, repr(user.error)
    assert user.passes > 1 and user.mismatches == 0, (user.passes, user.mismatches)


def test_two_async_engines_on_one_event_loop_each_equal_hf_greedy() -> None:
    refs = _references()
    engines = {}
    for family in ENGINE_FAMILIES:
        model, tokenizer = build_tiny_model(family)
        config = EngineConfig(**_tight_engine_options(refs[family][0]))
        engines[family] = AsyncEngine(EngineCore(model, tokenizer, config))

    async def tokens(engine: AsyncEngine, prompt: list[int]) -> list[int]:
        return [t async for d in engine.generate(prompt, GREEDY) for t in d.new_token_ids]

    async def main() -> dict[str, list[list[int]]]:
        jobs = {f: [tokens(engines[f], p) for p in refs[f][0]] for f in ENGINE_FAMILIES}
        done = await asyncio.gather(*(job for f in ENGINE_FAMILIES for job in jobs[f]))
        n = len(refs[ENGINE_FAMILIES[0]][0])
        return {f: done[i * n:(i + 1) * n] for i, f in enumerate(ENGINE_FAMILIES)}

    try:
        got = asyncio.run(asyncio.wait_for(main(), 300))
        for family in ENGINE_FAMILIES:
            prompts, family_refs = refs[family]
            _assert_parity(got[family], family_refs, prompts, f"async {family} beside another engine")
            assert engines[family].is_running
    finally:
        for engine in engines.values():
            engine.shutdown()


def test_a_model_that_drops_the_metadata_fails_the_step_loudly() -> None:
    from chatstream.engine.paged_attention import METADATA_KWARG

    model, tokenizer = build_tiny_model("llama")
    # HF's forward (the fused layers, which Llama would take, never call it).
    core = EngineCore(model, tokenizer, EngineConfig(num_kv_blocks=16, block_size=4, cpu_fused_layers=False))
    forward = model.forward
    # A model whose layers never see the call's keyword arguments would silently attend without the cache.
    model.forward = lambda *args, **kwargs: forward(*args, **{k: v for k, v in kwargs.items() if k != METADATA_KWARG})
    core.add_request("r", [5, 6, 7], GREEDY)
    with pytest.raises(RuntimeError, match="0 of 2 attention layers"):
        core.step()
