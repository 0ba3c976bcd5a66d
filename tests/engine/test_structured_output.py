"""Structured outputs in the engine: a tiny random model's output matches its grammar, every time.

A random model left alone writes noise, so an output that parses proves the bitmask step did the
work. Requests with and without a grammar share batches; a grammar the engine rejects is refused
before anything is queued; compiled grammars are cached per spec.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading

import jsonschema
import pytest
import torch

from chatstream import LLM, SamplingParams
from chatstream.engine.async_engine import AsyncEngine
from chatstream.engine.grammar_matcher import bitmask_width
from chatstream.engine.sampling_steps import apply_token_bitmask
from chatstream.engine.structured_output import StructuredOutput

SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 12},
    "size": {"enum": ["small", "large"]},
    "tags": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 99}, "maxItems": 3}},
    "required": ["name", "size", "tags"], "additionalProperties": False}


@pytest.fixture(scope="module")
def llm(tiny_model_factory):
    model, tokenizer = tiny_model_factory("qwen2")
    return LLM(model, tokenizer, num_kv_blocks=128)


def test_json_schema_regex_and_choice_hold_for_a_random_model_in_mixed_batches(llm):
    spec = StructuredOutput.json_schema(SCHEMA)
    params = []
    for seed in range(8):
        params.append(SamplingParams(max_tokens=120, temperature=1.0, seed=seed, structured_output=spec))
        params.append(SamplingParams(max_tokens=20, temperature=1.0, seed=seed, ignore_eos=True))  # unconstrained
    params.append(SamplingParams(max_tokens=40, temperature=1.0, seed=1,
                                 structured_output=StructuredOutput.regex(r"[a-d]{3}-[0-9]{2}")))
    params.append(SamplingParams(max_tokens=40, temperature=0.0,
                                 structured_output=StructuredOutput.choice(["yes", "no", "maybe"])))
    outputs = llm.generate([[5, 6, 7, 8]] * len(params), params)
    texts = [out.outputs[0].text for out in outputs]
    for i in range(0, 16, 2):
        assert outputs[i].outputs[0].finish_reason == "stop", texts[i]
        jsonschema.validate(json.loads(texts[i]), SCHEMA)
        assert len(outputs[i + 1].outputs[0].token_ids) == 20
    assert re.fullmatch(r"[a-d]{3}-[0-9]{2}", texts[16])
    assert texts[17] in ("yes", "no", "maybe")
    assert llm.engine.grammars.num_compiled == 3  # one per spec, shared by the 8 requests of the schema
    assert llm.engine.block_manager.num_used_blocks == 0


def test_a_rejected_grammar_is_refused_before_queueing(llm):
    bad = StructuredOutput.json_schema({"type": "object", "properties": {"a": {"$ref": "#/definitions/none"}}})
    with pytest.raises(ValueError, match="the grammar engine rejected the JSON schema"):
        llm.generate([[1, 2]], SamplingParams(structured_output=bad))
    with pytest.raises(ValueError, match="regular expression"):
        llm.generate([[1, 2]], SamplingParams(structured_output=StructuredOutput.regex("a(b")))
    assert not llm.engine.has_unfinished_requests()


def test_the_async_engine_compiles_off_the_loop_and_refuses_before_queueing(tiny_model_factory):
    from chatstream.engine.builder import build_engine_core

    model, tokenizer = tiny_model_factory("llama")
    engine = AsyncEngine(build_engine_core(model, tokenizer, {"num_kv_blocks": 32}))
    compiling_threads = []
    compile = engine.core.grammars.compile

    def recorded(spec):
        compiling_threads.append(threading.current_thread())
        return compile(spec)

    engine.core.grammars.compile = recorded
    try:
        async def run() -> str:
            bad = SamplingParams(structured_output=StructuredOutput.regex("(("))
            with pytest.raises(ValueError):
                async for _ in engine.generate([1, 2, 3], bad):
                    pass
            text = ""
            good = SamplingParams(max_tokens=30, structured_output=StructuredOutput.regex(r"ok|fine"))
            async for delta in engine.generate([1, 2, 3], good):
                text += delta.new_text
            return text

        assert asyncio.run(run()) in ("ok", "fine")
        assert engine.stats.num_finished_requests == 1  # the refused one never reached the engine
        # Compiled in a worker thread: neither the event loop's (this one) nor the engine's.
        assert len(compiling_threads) == 2
        assert all(t is not threading.main_thread() and t.name != "chatstream-engine" for t in compiling_threads)
    finally:
        engine.shutdown()


def test_the_bitmask_step_keeps_exactly_the_allowed_tokens():
    vocab = 70
    allowed = {0, 5, 31, 32, 63, 69}
    row = torch.zeros(bitmask_width(vocab), dtype=torch.int32)
    for t in allowed:
        word, bit = divmod(t, 32)
        row[word] = int(row[word]) | (1 << bit) if bit < 31 else int(row[word]) | -(1 << 31)
    logits = torch.randn(2, vocab)
    out = apply_token_bitmask(logits, [None, row])
    assert torch.equal(out[0], logits[0])
    kept = {t for t in range(vocab) if out[1, t] != -torch.inf}
    assert kept == allowed
