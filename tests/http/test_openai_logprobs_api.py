"""Log-probs, echo, logit_bias and vLLM's extras through the `openai` client against a live server.

The log-probs the server sends are compared with log_softmax of HF's own logits for the same
tokens (a separate copy of the tiny model), streamed and not, and for an echoed prompt, also when
its prefix sits in the prefix cache.
"""

from __future__ import annotations

import httpx
import pytest
import torch

from openai_support import serve_tiny

TOLERANCE = 1e-4
USER = [{"role": "user", "content": "Tell me about the quick brown fox."}]
LONG_PROMPT = "The quick brown fox jumps over the lazy dog. A scheduler decides which sequences run in each step."


@pytest.fixture(scope="module")
def served(tiny_model_factory):
    with serve_tiny(tiny_model_factory, "qwen2") as served:
        yield served


@pytest.fixture(scope="module")
def reference(tiny_model_factory):
    model, _ = tiny_model_factory("qwen2")
    return model


@pytest.fixture
def client(served):
    with served.client() as client:
        yield client


def _tokenize(served, **body) -> list[int]:
    return httpx.post(served.url + "/tokenize", json=body).json()["tokens"]


@torch.no_grad()
def _greedy_reference(model, prompt: list[int], steps: int) -> list[tuple[int, torch.Tensor]]:
    """HF greedy decoding: (token, log_softmax row it was chosen from) per step."""
    ids, out = list(prompt), []
    for _ in range(steps):
        row = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, -1].float(), dim=-1)
        token = int(row.argmax())
        out.append((token, row))
        ids.append(token)
    return out


def test_chat_logprobs_equal_hf_streamed_and_not(client, served, reference):
    prompt = _tokenize(served, messages=USER)
    expected = _greedy_reference(reference, prompt, 6)
    texts = served.state.openai.token_texts
    answer = client.chat.completions.create(model="tiny", messages=USER, max_tokens=6, temperature=0,
                                            logprobs=True, top_logprobs=3, extra_body={"ignore_eos": True})
    content = answer.choices[0].logprobs.content
    assert len(content) == 6 == answer.usage.completion_tokens
    for entry, (token, row) in zip(content, expected):
        assert bytes(entry.bytes) == bytes(texts.bytes(token))
        assert abs(entry.logprob - float(row[token])) < TOLERANCE
        assert [round(t.logprob, 3) for t in entry.top_logprobs] == [round(float(v), 3) for v in row.topk(3).values]
    streamed = []
    for chunk in client.chat.completions.create(model="tiny", messages=USER, max_tokens=6, temperature=0,
                                                logprobs=True, top_logprobs=3, stream=True,
                                                extra_body={"ignore_eos": True}):
        if chunk.choices and chunk.choices[0].logprobs is not None:
            streamed.extend(chunk.choices[0].logprobs.content)
    assert [(e.token, e.bytes) for e in streamed] == [(e.token, e.bytes) for e in content]
    assert all(abs(a.logprob - b.logprob) < TOLERANCE for a, b in zip(streamed, content))


def test_logprobs_without_top_logprobs_and_none_without_logprobs(client):
    answer = client.chat.completions.create(model="tiny", messages=USER, max_tokens=3, logprobs=True)
    assert all(entry.top_logprobs == [] for entry in answer.choices[0].logprobs.content)
    assert client.chat.completions.create(model="tiny", messages=USER, max_tokens=3).choices[0].logprobs is None


def test_echo_with_logprobs_scores_the_prompt_even_when_its_prefix_is_cached(client, served, reference):
    ids = _tokenize(served, prompt=LONG_PROMPT)
    assert len(ids) > 32  # two full blocks of 16 can be cached
    client.completions.create(model="tiny", prompt=LONG_PROMPT, max_tokens=1)  # warms the prefix cache
    with torch.no_grad():
        rows = torch.log_softmax(reference(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)
    for max_tokens in (0, 3):
        answer = client.completions.create(model="tiny", prompt=LONG_PROMPT, max_tokens=max_tokens, echo=True,
                                           logprobs=2, temperature=0)
        choice = answer.choices[0]
        assert choice.text.startswith(LONG_PROMPT) and (max_tokens or choice.text == LONG_PROMPT)
        lp = choice.logprobs
        assert len(lp.tokens) == len(ids) + max_tokens == len(lp.token_logprobs) == len(lp.text_offset)
        assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
        for p in range(1, len(ids)):
            assert abs(lp.token_logprobs[p] - float(rows[p - 1, ids[p]])) < TOLERANCE
            assert len(lp.top_logprobs[p]) >= 2
        assert answer.usage.completion_tokens == max_tokens
        assert answer.usage.prompt_tokens_details is None or answer.usage.prompt_tokens_details.cached_tokens == 0
        streamed = list(client.completions.create(model="tiny", prompt=LONG_PROMPT, max_tokens=max_tokens, echo=True,
                                                  logprobs=2, temperature=0, stream=True))
        assert "".join(c.choices[0].text for c in streamed if c.choices) == choice.text
        tokens = [t for c in streamed if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.tokens]
        assert tokens == lp.tokens


def test_completion_logprobs_without_echo(client):
    answer = client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=5, logprobs=3,
                                       temperature=0, extra_body={"ignore_eos": True})
    lp = answer.choices[0].logprobs
    assert len(lp.tokens) == 5 and "".join(lp.tokens) == answer.choices[0].text
    assert all(1 <= len(top) <= 4 for top in lp.top_logprobs)  # keyed by text: tokens that read alike share a key
    assert lp.text_offset == sorted(lp.text_offset) and lp.text_offset[0] == 0


def test_logit_bias_forces_a_token(client, served):
    token = _tokenize(served, prompt=" fox", add_special_tokens=False)[0]
    text = served.state.openai.token_texts.text(token)
    for stream in (False, True):
        kwargs = dict(model="tiny", messages=USER, max_tokens=4, logit_bias={str(token): 100}, temperature=1.0,
                      logprobs=True, extra_body={"ignore_eos": True})
        if stream:
            entries = [e for c in client.chat.completions.create(stream=True, **kwargs)
                       if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
        else:
            entries = client.chat.completions.create(**kwargs).choices[0].logprobs.content
        assert [e.token for e in entries] == [text] * 4


@pytest.mark.parametrize("stream", [False, True])
def test_min_tokens_and_ignore_eos_are_honoured_in_chat(client, stream):
    kwargs = dict(model="tiny", messages=USER, max_tokens=40, temperature=0,
                  extra_body={"min_tokens": 30, "stop_token_ids": [], "skip_special_tokens": False},
                  stream=stream)
    if stream:
        chunks = list(client.chat.completions.create(stream_options={"include_usage": True}, **kwargs))
        completion_tokens = chunks[-1].usage.completion_tokens
    else:
        completion_tokens = client.chat.completions.create(**kwargs).usage.completion_tokens
    assert completion_tokens >= 30


def test_ignore_eos_in_chat_writes_past_the_end_of_turn(client, served):
    # A bias makes the end-of-turn token the greedy pick at every step: only ignore_eos lets the reply go on.
    vocab = served.chat_stream.tokenizer.get_vocab()
    end = next(vocab[t] for t in ("<|im_end|>", "<|endoftext|>") if t in vocab)
    kwargs = dict(model="tiny", messages=USER, max_tokens=12, temperature=0, logit_bias={str(end): 100})
    stopped = client.chat.completions.create(**kwargs)
    assert (stopped.usage.completion_tokens, stopped.choices[0].finish_reason) == (1, "stop")
    going = client.chat.completions.create(**kwargs, extra_body={"ignore_eos": True, "skip_special_tokens": False})
    assert (going.usage.completion_tokens, going.choices[0].finish_reason) == (12, "length")


def test_stop_strings_with_include_stop_str_in_output(client):
    plain = client.completions.create(model="tiny", prompt="The quick brown", max_tokens=12, temperature=0,
                                      extra_body={"ignore_eos": True}).choices[0].text
    stop = plain[3:6]
    cut = client.completions.create(model="tiny", prompt="The quick brown", max_tokens=12, temperature=0, stop=[stop],
                                    extra_body={"ignore_eos": True, "include_stop_str_in_output": True})
    assert cut.choices[0].text == plain[:plain.index(stop) + len(stop)]
