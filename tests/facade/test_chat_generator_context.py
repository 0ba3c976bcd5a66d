"""A conversation longer than the context: old exchanges are left out whole, the system text and
the latest turn stay, and the history itself is kept."""

from __future__ import annotations

import asyncio

from chatstream import ChatPromptDatabricksDolly, ChatStream


def test_old_exchanges_are_left_out_whole(tiny_model_factory):
    model, tokenizer = tiny_model_factory("llama")
    chat_stream = ChatStream(model=model, tokenizer=tokenizer, chat_prompt_clazz=ChatPromptDatabricksDolly,
                             context_len=300, max_new_tokens=8, temperature=0.0, num_kv_blocks=64)
    sent: list[list[int]] = []
    generate = chat_stream.engine.generate

    def recording(ids, *args, **kwargs):
        sent.append(list(ids))
        return generate(ids, *args, **kwargs)

    chat_stream.engine.generate = recording
    chat_prompt = chat_stream.get_console_chat_prompt()
    for i in range(6):
        chat_prompt.add_requester_msg(f"question number {i} " + "words " * 6)
        chat_prompt.add_responder_msg(f"answer number {i}")

    async def turn() -> None:
        async for _ in chat_stream.handle_console_input("the last question"):
            pass

    try:
        asyncio.run(turn())
    finally:
        chat_stream.shutdown()
    text = tokenizer.decode(sent[0])
    assert len(sent[0]) <= 300 - 8
    assert text.startswith("Below is an instruction")  # the system text stays
    assert "the last question" in text and "question number 5" in text
    assert "question number 0" not in text  # the oldest exchange went first, whole
    assert "### Instruction:\nquestion number" in text  # ... and what remains starts at a user turn
    assert chat_stream.chat_generator.records[-1].truncated_prompt
    assert chat_prompt.get_turn() == 7  # the history itself is whole
