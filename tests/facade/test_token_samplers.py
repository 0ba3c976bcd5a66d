"""The original's token-sampler presets: standalone `do_sample`, and how they adjust a ChatStream's requests."""

from __future__ import annotations

import asyncio

import torch

from chatstream import ChatPromptTogetherRedPajamaINCITEChat, ChatStream, TokenSamplerHft, TokenSamplerIsok
from chatstream.engine.sampling_params import SamplingParams


def test_do_sample_follows_the_original_arguments():
    logits = torch.tensor([0.0, 3.0, 2.5, -1.0])
    sampler = TokenSamplerHft()
    assert sampler.do_sample(logits, temperature=0.0) == 1  # greedy
    # A multiplicative penalty of 2 on the past token 1 halves its logit: 1.5 < 2.5.
    assert sampler.do_sample(logits, temperature=0.0, past_tokens=[1], penalty=2.0) == 2
    assert sampler.do_sample(logits, temperature=0.0, past_tokens=[1], penalty=1.0,
                             penalty_method="subtractive") == 2  # 3.0 - 1.0 < 2.5
    draws = {sampler.do_sample(logits, top_k=2, temperature=1.0) for _ in range(50)}
    assert draws <= {1, 2} and len(draws) == 2  # only the top two, both reachable
    assert {TokenSamplerIsok().do_sample(logits, top_k=1, top_p=0.01) for _ in range(10)} == {1}


def test_isok_turns_top_p_off_for_the_engine():
    params = SamplingParams(top_k=5, top_p=0.5)
    assert TokenSamplerHft().engine_params(params) is params
    assert TokenSamplerIsok().engine_params(params).top_p == 1.0


def test_chat_stream_applies_the_preset_to_its_requests(tiny_model_factory):
    model, tokenizer = tiny_model_factory("llama")
    chat_stream = ChatStream(model=model, tokenizer=tokenizer, token_sampler=TokenSamplerIsok(), top_k=5, top_p=0.5,
                             chat_prompt_clazz=ChatPromptTogetherRedPajamaINCITEChat, max_new_tokens=4,
                             num_kv_blocks=32)
    seen = []
    generate = chat_stream.engine.generate

    def recording(ids, params, **kwargs):
        seen.append(params)
        return generate(ids, params, **kwargs)

    chat_stream.engine.generate = recording

    async def turn():
        return [chunk async for chunk in chat_stream.handle_console_input("hi")]

    try:
        asyncio.run(turn())
    finally:
        chat_stream.shutdown()
    assert seen[0].top_k == 5 and seen[0].top_p == 1.0
