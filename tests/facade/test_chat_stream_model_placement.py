"""A model handed to ChatStream runs where its owner put it, including one placed by `device_map`,
and the console path renders the same history the HTTP path would."""

from __future__ import annotations

import asyncio
import os

import pytest
import torch
from transformers import AutoModelForCausalLM

from chatstream import ChatPromptTogetherRedPajamaINCITEChat, ChatStream


async def _console_turn(chat_stream: ChatStream, text: str) -> list[tuple[str, str, str]]:
    return [chunk async for chunk in chat_stream.handle_console_input(text)]


@pytest.mark.parametrize("place", ["to_device", "device_map"])
def test_a_given_model_is_served_where_it_is(place, tiny_model_factory, tmp_path):
    device = os.environ.get("CHATSTREAM_TEST_DEVICE", "cpu")
    model, tokenizer = tiny_model_factory("llama")
    if place == "device_map":
        model.save_pretrained(tmp_path)
        model = AutoModelForCausalLM.from_pretrained(tmp_path, device_map={"": device}, dtype=torch.float32)
    chat_stream = ChatStream(model=model, tokenizer=tokenizer, device="cpu" if device != "cpu" else "cuda",
                             chat_prompt_clazz=ChatPromptTogetherRedPajamaINCITEChat, max_new_tokens=8,
                             temperature=0.0, num_kv_blocks=32)
    try:
        chunks = asyncio.run(_console_turn(chat_stream, "hello"))
        assert model.device.type == torch.device(device).type  # not moved to the `device` argument
        assert chat_stream.device == model.device
        assert [pos for *_, pos in chunks][-1] == "end" and chunks[0][2] == "begin"
        record = chat_stream.chat_generator.records[-1]
        assert record.num_output_tokens >= 1
        reply = chat_stream.console_chat_prompt.get_responder_last_msg()
        assert chunks[-1][0] == reply + "<::EOS::>"  # the last tuple carries the whole reply, in order
    finally:
        chat_stream.shutdown()
