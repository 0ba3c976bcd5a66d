"""ChatStream on the real engine with the bundled SmolLM2, over real HTTP: multi-turn history and
prefix-cache hits, per-session parameters, and a disconnect that aborts the engine request."""

from __future__ import annotations

import time
import urllib.parse

import pytest
from fastapi import FastAPI

from chatstream import ChatPromptChatTemplate, ChatStream
from live_server import LiveServer, read_chat_stream, session_client

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(smollm2_dir):
    chat_stream = ChatStream(model=str(smollm2_dir), chat_prompt_clazz=ChatPromptChatTemplate, temperature=0.0,
                             max_new_tokens=48, context_len=2048, num_kv_blocks=256)
    sent_prompts: list[list[int]] = []
    generate = chat_stream.engine.generate

    def recording_generate(ids, *args, **kwargs):
        sent_prompts.append(list(ids))
        return generate(ids, *args, **kwargs)

    chat_stream.engine.generate = recording_generate
    app = FastAPI()
    chat_stream.append_middlewares(app)
    chat_stream.append_apis(app, {"all": True})
    with LiveServer(app) as server:
        yield server, chat_stream, sent_prompts
    chat_stream.shutdown()


def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_multi_turn_history_reaches_the_model_and_hits_the_prefix_cache(served, smollm2_tokenizer):
    server, chat_stream, sent_prompts = served
    questions = ["What is the capital of France?", "And of Germany?", "Which of the two is bigger?"]
    replies: list[str] = []
    with session_client(server.url) as client:
        for question in questions:
            replies.append(read_chat_stream(client.post("/chat_stream", json={"user_input": question}))[-1])
            records = list(chat_stream.chat_generator.records)
            # What the model saw is exactly the chat template over the whole conversation so far.
            messages = []
            for q, a in zip(questions, replies[:-1]):
                messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
            messages.append({"role": "user", "content": question})
            expected = smollm2_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            assert sent_prompts[-1] == smollm2_tokenizer.encode(expected, add_special_tokens=False)
            if len(replies) > 1:  # the earlier turns are a prefix of this prompt: cached blocks are reused
                assert records[-1].num_cached_tokens >= chat_stream.engine.stats.block_size
        prompt = urllib.parse.unquote(client.get("/get_prompt").json()["prompt"])
    assert "Paris" in replies[0] and "Berlin" in replies[1]
    for question, reply in zip(questions, replies):
        assert question in prompt and reply in prompt


def test_session_generation_params_apply_to_the_next_reply(served):
    server, chat_stream, _ = served
    with session_client(server.url) as client:
        assert client.post("/set_generation_params", json={"max_new_tokens": 3}).status_code == 200
        read_chat_stream(client.post("/chat_stream", json={"user_input": "Tell me about the sea."}))
    record = chat_stream.chat_generator.records[-1]
    assert record.num_output_tokens == 3 and record.finish_reason == "length"


def test_a_disconnect_aborts_the_engine_request_and_keeps_the_partial_reply(served):
    server, chat_stream, _ = served
    engine = chat_stream.engine  # read through its stats: the snapshot its thread publishes after each step
    free_before = engine.stats.num_free_kv_blocks
    with session_client(server.url) as client:
        assert client.post("/set_generation_params", json={"max_new_tokens": 400}).status_code == 200
        with client.stream("POST", "/chat_stream",
                           json={"user_input": "Write a long story about a dragon and a knight."}) as response:
            chunks = response.iter_text()
            seen = next(chunks)
            while seen.count("<::EOS::>") < 3:
                seen += next(chunks)
        _wait_for(lambda: engine.stats.num_running == engine.stats.num_waiting == 0
                  and chat_stream.admission.num_running == 0)
        prompt = urllib.parse.unquote(client.get("/get_prompt").json()["prompt"])
    record = chat_stream.chat_generator.records[-1]
    assert record.finish_reason == "abort" and record.num_output_tokens < 400
    assert engine.stats.num_free_kv_blocks == free_before  # every block came back (or stays cached)
    partial = seen.split("<::EOS::>")[-2]
    assert partial and partial in prompt
