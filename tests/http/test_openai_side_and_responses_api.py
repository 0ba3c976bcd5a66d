"""The side endpoints (/tokenize, /detokenize, /version, /v1/models/{id}), OpenAI-shaped 404 and 405
under /v1, and the Responses API through the `openai` client, against a live server."""

from __future__ import annotations

import httpx
import openai
import pytest

from chatstream import __version__
from openai_support import serve_tiny

USER = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(scope="module")
def served(tiny_model_factory):
    with serve_tiny(tiny_model_factory, "mistral") as served:
        yield served


@pytest.fixture
def client(served):
    with served.client() as client:
        yield client


def test_tokenize_text_and_messages_and_detokenize(served):
    tokenizer = served.chat_stream.tokenizer
    text = httpx.post(served.url + "/tokenize", json={"prompt": "The quick brown fox", "return_token_strs": True}).json()
    assert text["tokens"] == tokenizer.encode("The quick brown fox") and text["count"] == len(text["tokens"])
    assert text["max_model_len"] == served.chat_stream.engine.max_model_len
    assert "".join(text["token_strs"]) == "The quick brown fox"
    chat = httpx.post(served.url + "/tokenize", json={"messages": USER}).json()
    rendered = tokenizer.apply_chat_template(USER, tokenize=False, add_generation_prompt=True)
    assert chat["tokens"] == tokenizer.encode(rendered, add_special_tokens=False)
    back = httpx.post(served.url + "/detokenize", json={"tokens": text["tokens"]}).json()
    assert back == {"prompt": "The quick brown fox"}
    bad = httpx.post(served.url + "/detokenize", json={"tokens": [10**9]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "tokens"
    both = httpx.post(served.url + "/tokenize", json={"prompt": "x", "messages": USER})
    assert both.status_code == 400


def test_version_and_the_model_card(served, client):
    assert httpx.get(served.url + "/version").json() == {"version": __version__}
    card = client.models.retrieve("tiny")
    assert card.id == "tiny" and card.max_model_len == served.chat_stream.engine.max_model_len
    assert client.models.list().data[0].max_model_len == card.max_model_len
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("other")
    assert err.value.body["code"] == "model_not_found"


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/v1/nowhere", 404), ("GET", "/v1/chat/completions", 405), ("PUT", "/v1/models", 405),
    ("POST", "/v1", 404)])
def test_http_errors_under_v1_have_openais_shape(served, method, path, status):
    response = httpx.request(method, served.url + path)
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"


def test_a_response_with_instructions_and_usage(client, served):
    response = client.responses.create(model="tiny", input="Tell me a story", instructions="Be brief.",
                                       max_output_tokens=6, temperature=0)
    assert response.object == "response" and response.id.startswith("resp_")
    assert response.status in ("completed", "incomplete") and response.output_text
    assert response.output[0].type == "message" and response.output[0].role == "assistant"
    tokenizer = served.chat_stream.tokenizer
    rendered = tokenizer.apply_chat_template([{"role": "system", "content": "Be brief."},
                                              {"role": "user", "content": "Tell me a story"}],
                                             tokenize=False, add_generation_prompt=True)
    assert response.usage.input_tokens == len(tokenizer.encode(rendered, add_special_tokens=False))
    assert response.usage.output_tokens <= 6
    if response.status == "incomplete":
        assert response.incomplete_details.reason == "max_output_tokens"
    assert client.responses.retrieve(response.id).output_text == response.output_text


def test_previous_response_id_chains_the_conversation_and_store_false_is_honoured(client, served):
    first = client.responses.create(model="tiny", input="My name is Ada.", max_output_tokens=4, temperature=0,
                                    instructions="Not carried over.")
    second = client.responses.create(model="tiny", input="What is my name?", previous_response_id=first.id,
                                     max_output_tokens=4, temperature=0)
    tokenizer = served.chat_stream.tokenizer
    conversation = [{"role": "user", "content": "My name is Ada."}, {"role": "assistant", "content": first.output_text},
                    {"role": "user", "content": "What is my name?"}]
    rendered = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    assert second.usage.input_tokens == len(tokenizer.encode(rendered, add_special_tokens=False))
    assert second.previous_response_id == first.id
    unstored = client.responses.create(model="tiny", input="Forget this.", max_output_tokens=2, store=False)
    for use in (lambda: client.responses.retrieve(unstored.id),
                lambda: client.responses.create(model="tiny", input="x", previous_response_id=unstored.id)):
        with pytest.raises(openai.NotFoundError):
            use()
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)


def test_a_streamed_response_sends_openais_events(client):
    events = list(client.responses.create(model="tiny", input="Stream please", max_output_tokens=8, temperature=0,
                                          stream=True))
    types = [e.type for e in events]
    assert types[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert types[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          types[-1]] and types[-1] in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text and events[-4].text == text and events[-1].response.output_text == text
    whole = client.responses.create(model="tiny", input="Stream please", max_output_tokens=8, temperature=0)
    assert whole.output_text == text


def test_responses_fields_we_do_not_serve_are_400s(client):
    for kwargs, param in (({"tools": [{"type": "web_search"}]}, "tools"), ({"reasoning": {"effort": "high"}}, "reasoning"),
                          ({"extra_body": {"bogus": 1}}, "bogus")):
        with pytest.raises(openai.BadRequestError) as err:
            client.responses.create(model="tiny", input="x", **kwargs)
        assert err.value.param == param
