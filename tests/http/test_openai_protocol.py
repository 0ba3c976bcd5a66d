"""Unit tests of the OpenAI request models, their conversion to SamplingParams, the response shapes,
and how a pydantic error becomes a 400 naming the field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from chatstream.http.openai.choices import Choices
from chatstream.http.openai_protocol import ChatCompletionRequest, CompletionRequest, OpenAIError
from chatstream.http.openai_routes import validation_error
from chatstream.engine.outputs import RequestDelta

USER = [{"role": "user", "content": "hi"}]


def _chat(**fields) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "tiny", "messages": USER, **fields})


def _delta(text: str, finished: bool = False, reason: str | None = None, out: int = 1, cached: int = 0):
    return RequestDelta("r", [1], text, finished, reason if finished else None, 5, cached, out)


def test_chat_request_converts_every_sampling_field():
    request = _chat(temperature=0.5, top_p=0.9, top_k=7, min_p=0.1, seed=3, stop="END", presence_penalty=0.5,
                    frequency_penalty=-0.5, repetition_penalty=1.2, max_tokens=20)
    params = request.to_sampling_params(100, stop_token_ids=[4])
    assert (params.temperature, params.top_p, params.top_k, params.min_p, params.seed) == (0.5, 0.9, 7, 0.1, 3)
    assert params.stop == ["END"] and params.stop_token_ids == [4] and params.max_tokens == 20
    assert (params.presence_penalty, params.frequency_penalty, params.repetition_penalty) == (0.5, -0.5, 1.2)
    # OpenAI's penalties subtract, over the output only.
    assert params.frequency_penalty_mode == "subtractive" and params.frequency_penalty_scope == "output"


def test_max_tokens_defaults_prefers_the_new_name_and_is_clamped_to_the_room_left():
    assert _chat().to_sampling_params(77).max_tokens == 77
    assert _chat(max_tokens=5, max_completion_tokens=9).to_sampling_params(77).max_tokens == 9
    assert _chat(max_tokens=500).to_sampling_params(None, max_room=30).max_tokens == 30
    assert CompletionRequest(prompt="x").to_sampling_params(None).max_tokens == 16  # OpenAI's default


@pytest.mark.parametrize(("fields", "param"), [
    ({"temperature": -1}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"presence_penalty": 3}, "presence_penalty"),
    ({"stop": ["ok", ""]}, "stop"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_completion_tokens": 0}, "max_completion_tokens"),
])
def test_a_bad_sampling_value_is_a_400_naming_the_field(fields, param):
    with pytest.raises(OpenAIError) as err:
        _chat(**fields).to_sampling_params(100)
    assert err.value.status_code == 400 and err.value.param == param and param in err.value.message


@pytest.mark.parametrize("fields", [{"audio": {"voice": "x"}}, {"prediction": {"type": "content"}},
                                    {"functions": [{"name": "f"}]}, {"use_beam_search": True},
                                    {"modalities": ["text", "audio"]}, {"allowed_token_ids": [1]}])
def test_known_fields_we_cannot_honour_are_refused_not_ignored(fields):
    with pytest.raises(OpenAIError) as err:
        _chat(**fields).to_sampling_params(100)
    assert err.value.status_code == 400 and "not supported" in err.value.message
    assert err.value.param == next(iter(fields))


def test_such_fields_at_their_neutral_values_and_fields_openai_ignores_are_accepted():
    _chat(logprobs=False, response_format={"type": "text"}, logit_bias={}, user="u", modalities=["text"],
          use_beam_search=False, metadata={"a": "b"}, store=True, service_tier="auto").to_sampling_params(10)


def test_an_unknown_field_is_a_400_as_openai_answers_it():
    with pytest.raises(ValidationError) as err:
        ChatCompletionRequest.model_validate({"messages": USER, "unknown_extra": 1})
    error = validation_error(err.value)
    assert error.param == "unknown_extra" and error.message == "Unrecognized request argument supplied: unknown_extra"


def test_vllm_extras_and_logprobs_become_sampling_params():
    params = _chat(min_tokens=3, ignore_eos=True, stop_token_ids=[9], skip_special_tokens=False,
                   include_stop_str_in_output=True, logprobs=True, top_logprobs=4, logit_bias={"5": -100},
                   ).to_sampling_params(100, stop_token_ids=[7])
    # With ignore_eos the server's end-of-turn ids (7) do not join, as vLLM skips its EOS ids; the request's own stop.
    assert (params.min_tokens, params.ignore_eos, params.stop_token_ids) == (3, True, [9])
    assert _chat(stop_token_ids=[9]).to_sampling_params(100, stop_token_ids=[7]).stop_token_ids == [7, 9]
    assert (params.skip_special_tokens, params.include_stop_str_in_output) == (False, True)
    assert (params.logprobs, params.logit_bias) == (4, {5: -100.0})
    echo = CompletionRequest(prompt="x", echo=True, logprobs=2, max_tokens=0)
    assert not echo.keeps_output
    params = echo.to_sampling_params(10)
    assert (params.logprobs, params.prompt_logprobs, params.max_tokens) == (2, 2, 1)


def test_message_content_parts_and_the_developer_role():
    request = _chat(messages=[{"role": "developer", "content": "be brief"},
                              {"role": "user", "content": [{"type": "text", "text": "a"},
                                                           {"type": "text", "text": "b"}]}])
    assert request.template_messages() == [{"role": "system", "content": "be brief"},
                                           {"role": "user", "content": "a\nb"}]


def test_n_and_stream_options():
    assert _chat(n=8).n == 8
    with pytest.raises(ValidationError):
        _chat(n=9)
    assert _chat(stream=True, stream_options={"include_usage": True}).include_usage
    assert not _chat(stream=False, stream_options={"include_usage": True}).include_usage


@pytest.mark.parametrize(("prompt", "expected"), [
    ("hello", ["hello"]), (["a", "b"], ["a", "b"]), ([5, 6, 7], [[5, 6, 7]]), ([[1], [2, 3]], [[1], [2, 3]]),
])
def test_completion_prompt_forms(prompt, expected):
    assert CompletionRequest(prompt=prompt).prompts() == expected


@pytest.mark.parametrize(("fields", "param"), [
    ({"suffix": "end"}, "suffix"), ({"best_of": 3}, "best_of"), ({"max_tokens": 0}, "max_tokens"),
])
def test_unsupported_completion_features(fields, param):
    with pytest.raises(OpenAIError) as err:
        CompletionRequest(prompt="x", **fields).to_sampling_params(10)
    assert err.value.param == param


def test_an_empty_or_huge_prompt_list_is_a_400():
    for prompt in ([], ["x"] * 33):
        with pytest.raises(OpenAIError) as err:
            CompletionRequest(prompt=prompt).prompts()
        assert err.value.param == "prompt"


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
    ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
    ({"model": "m", "messages": USER, "temperature": "hot"}, "temperature"),
    ({"model": "m"}, "messages"),
    ({"model": "m", "messages": USER, "ignore_eos": "yes"}, "ignore_eos"),
])
def test_validation_errors_become_400s_naming_the_field(body, param):
    with pytest.raises(ValidationError) as err:
        ChatCompletionRequest.model_validate(body)
    error = validation_error(err.value)
    assert (error.status_code, error.param) == (400, param)
    assert error.body()["error"]["message"].startswith(param)


def test_error_body_has_openais_shape():
    error = OpenAIError(429, "busy", type="requests", code="rate_limit_exceeded", headers={"Retry-After": "2"})
    assert error.body() == {"error": {"message": "busy", "type": "requests", "param": None,
                                      "code": "rate_limit_exceeded"}}


def test_choices_build_the_full_responses_and_usage():
    choices = Choices([5], 2)
    choices.add(0, _delta("Hel", cached=3))
    choices.add(1, _delta("Bye", finished=True, reason="length", out=1, cached=2))
    choices.add(0, _delta("lo", finished=True, reason="stop", out=2, cached=3))
    chat = choices.chat_completion("chatcmpl-1", 10, "tiny")
    assert chat["object"] == "chat.completion" and chat["model"] == "tiny" and chat["created"] == 10
    assert [c["message"]["content"] for c in chat["choices"]] == ["Hello", "Bye"]
    assert [c["finish_reason"] for c in chat["choices"]] == ["stop", "length"]
    assert chat["choices"][0]["message"]["role"] == "assistant" and chat["choices"][1]["index"] == 1
    # The prompt counts once for both choices; cached is what both found.
    assert chat["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8,
                             "prompt_tokens_details": {"cached_tokens": 2}}
    text = choices.text_completion("cmpl-1", 10, "tiny")
    assert text["object"] == "text_completion" and [c["text"] for c in text["choices"]] == ["Hello", "Bye"]
    choices.close()
    assert choices.finish_reasons == ["stop", "length"]  # closing keeps the ends already known


def test_closing_choices_ends_the_open_ones_as_aborted():
    choices = Choices([3, 4], 1)
    choices.add(0, _delta("x", finished=True, reason="stop"))
    choices.close()
    assert choices.finish_reasons == ["stop", "abort"] and choices.usage()["prompt_tokens"] == 7


def test_ignore_eos_extra_reaches_sampling_params() -> None:
    assert _chat(ignore_eos=True).to_sampling_params(10).ignore_eos is True
    assert _chat().to_sampling_params(10).ignore_eos is False
    # Nothing stops it at an end of turn, so the context still bounds it: a huge max_tokens is clamped to the room.
    assert _chat(ignore_eos=True, max_tokens=10**12).to_sampling_params(10, max_room=30).max_tokens == 30
