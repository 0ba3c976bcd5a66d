"""Structured outputs and tool calling through the `openai` client against a live server.

The model is a tiny random one: left alone it writes noise, so every output that parses, validates
against its schema, or comes back as a tool call is the grammar engine's work. Tool calls are
checked in both formats the server parses (Hermes-style `<tool_call>` blocks and Llama 3's JSON),
whole and streamed as OpenAI streams them.
"""

from __future__ import annotations

import json

import jsonschema
import pytest
from pydantic import BaseModel, Field

from openai_support import HERMES_TEMPLATE, LLAMA3_TEMPLATE, TIME_TOOL, WEATHER_TOOL, serve_tiny

USER = [{"role": "user", "content": "What is the weather in Paris?"}]
SCHEMA = {"type": "object", "properties": {
    "title": {"type": "string", "maxLength": 10},
    "rating": {"enum": ["good", "bad"]},
    "scores": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}, "maxItems": 3}},
    "required": ["title", "rating", "scores"], "additionalProperties": False}


class Review(BaseModel):
    title: str = Field(max_length=10)
    rating: int = Field(ge=1, le=5)


@pytest.fixture(scope="module", params=["hermes", "llama3_json"])
def served(request, tiny_model_factory):
    template = HERMES_TEMPLATE if request.param == "hermes" else LLAMA3_TEMPLATE
    with serve_tiny(tiny_model_factory, "llama", template) as served:
        yield served


@pytest.fixture
def client(served):
    with served.client() as client:
        yield client


@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_output_validates(client, stream):
    fmt = {"type": "json_schema", "json_schema": {"name": "review", "schema": SCHEMA, "strict": True}}
    for seed in range(3):
        kwargs = dict(model="tiny", messages=USER, max_tokens=80, temperature=1.0, seed=seed, response_format=fmt)
        if stream:
            text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(stream=True, **kwargs)
                           if c.choices)
        else:
            text = client.chat.completions.create(**kwargs).choices[0].message.content
        jsonschema.validate(json.loads(text), SCHEMA)


def test_parse_with_a_pydantic_model(client):
    completion = client.chat.completions.parse(model="tiny", messages=USER, response_format=Review, max_tokens=60,
                                               temperature=1.0, seed=4)
    review = completion.choices[0].message.parsed
    assert isinstance(review, Review) and 1 <= review.rating <= 5


def test_json_object_and_vllm_structured_outputs_on_completions(client):
    answer = client.chat.completions.create(model="tiny", messages=USER, max_tokens=60, temperature=0.7, seed=1,
                                            response_format={"type": "json_object"})
    assert isinstance(json.loads(answer.choices[0].message.content), dict)
    regex = client.completions.create(model="tiny", prompt="Code:", max_tokens=20, temperature=1.0, seed=2,
                                      extra_body={"structured_outputs": {"regex": "[A-F]{2}-[0-9]{3}"}})
    assert len(regex.choices[0].text) == 6 and regex.choices[0].text[2] == "-"
    chosen = list(client.completions.create(model="tiny", prompt="Pick:", max_tokens=20, stream=True,
                                            extra_body={"guided_choice": ["alpha", "beta"]}))
    assert "".join(c.choices[0].text for c in chosen if c.choices) in ("alpha", "beta")


def test_required_tool_choice_always_gives_parseable_calls(client):
    for seed in range(8):
        answer = client.chat.completions.create(model="tiny", messages=USER, tools=[WEATHER_TOOL, TIME_TOOL],
                                                tool_choice="required", parallel_tool_calls=False, max_tokens=80,
                                                temperature=1.0, seed=seed)
        choice = answer.choices[0]
        assert choice.finish_reason == "tool_calls" and len(choice.message.tool_calls) == 1
        call = choice.message.tool_calls[0]
        assert call.type == "function" and call.id.startswith("call_")
        tool = {"get_weather": WEATHER_TOOL, "get_time": TIME_TOOL}[call.function.name]
        jsonschema.validate(json.loads(call.function.arguments), tool["function"]["parameters"])


def test_a_named_function_is_called_and_streams_as_openai_streams_calls(client):
    kwargs = dict(model="tiny", messages=USER, tools=[WEATHER_TOOL, TIME_TOOL], max_tokens=80, temperature=1.0,
                  seed=7, tool_choice={"type": "function", "function": {"name": "get_weather"}})
    whole = client.chat.completions.create(**kwargs).choices[0]
    assert whole.finish_reason == "stop"  # OpenAI's reason when one function was forced
    assert [c.function.name for c in whole.message.tool_calls] == ["get_weather"]
    chunks = [c for c in client.chat.completions.create(stream=True, **kwargs) if c.choices]
    calls = [tc for c in chunks for tc in c.choices[0].delta.tool_calls or []]
    assert calls[0].id.startswith("call_") and calls[0].function.name == "get_weather"
    assert calls[0].function.arguments == ""  # the header first, then the arguments in pieces
    assert all(tc.index == 0 and tc.id is None for tc in calls[1:])
    arguments = "".join(tc.function.arguments for tc in calls[1:])
    assert json.loads(arguments) == json.loads(whole.message.tool_calls[0].function.arguments)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_a_tool_history_and_auto_choice_are_accepted(client):
    history = USER + [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": json.dumps({"city": "Paris", "days": 1})}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"}]
    answer = client.chat.completions.create(model="tiny", messages=history, tools=[WEATHER_TOOL], max_tokens=10,
                                            temperature=0)
    assert answer.choices[0].finish_reason in ("stop", "length", "tool_calls")
    none = client.chat.completions.create(model="tiny", messages=USER, tools=[WEATHER_TOOL], tool_choice="none",
                                          max_tokens=5)
    assert none.choices[0].message.tool_calls is None


def test_tool_and_schema_mistakes_are_400s_naming_the_field(client):
    import openai

    cases = [({"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
              "tool_choice"),
             ({"tools": [WEATHER_TOOL, WEATHER_TOOL]}, "tools"),
             ({"tools": [WEATHER_TOOL], "tool_choice": "required", "response_format": {"type": "json_object"}},
              "response_format"),
             ({"messages": [{"role": "user", "content": None}]}, "messages.0")]
    for kwargs, param in cases:
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(**{"model": "tiny", "messages": USER, "max_tokens": 2, **kwargs})
        assert err.value.param == param, err.value.message


def test_a_template_without_tools_refuses_them(tiny_model_factory):
    import openai

    plain = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}<|assistant|>"
    with serve_tiny(tiny_model_factory, "gpt2", plain) as served, served.client() as client:
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(model="tiny", messages=USER, tools=[WEATHER_TOOL], max_tokens=2)
        assert err.value.param == "tools"
