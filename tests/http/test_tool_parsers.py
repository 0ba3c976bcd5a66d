"""The tool-call parsers: whole replies, and the same replies fed in random pieces as a stream."""

from __future__ import annotations

import json
import random

import pytest

from chatstream.http.openai.tool_parsers import ToolCallStream, parse_tool_calls

HERMES = ('Let me check.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", '
          '"nested": [1, {"x": "}\\"{"}]}}\n</tool_call>\n<tool_call>\n{"arguments": {}, "name": "now"}\n</tool_call>')
LLAMA3 = '<|python_tag|>{"name": "f", "parameters": {"a": "x;y"}}; {"name": "g", "parameters": {}}'


def _streamed(text: str, format: str, seed: int):
    rng, stream, deltas, i = random.Random(seed), ToolCallStream(format), [], 0
    while i < len(text):
        n = rng.randint(1, 9)
        deltas += stream.feed(text[i:i + n])
        i += n
    deltas += stream.finish()
    content = "".join(d.content for d in deltas if d.index is None)
    names, arguments, headers = {}, {}, []
    for d in deltas:
        if d.name is not None:
            headers.append(d.index)
            names[d.index] = d.name
            assert d.arguments == "" and d.id.startswith("call_")
        elif d.index is not None:
            assert d.index in names  # the header came first
            arguments[d.index] = arguments.get(d.index, "") + d.arguments
    return content, names, arguments, headers


@pytest.mark.parametrize(("text", "format", "content", "calls"), [
    (HERMES, "hermes", "Let me check.", [("get_weather", {"city": "Paris", "nested": [1, {"x": '}"{'}]}),
                                         ("now", {})]),
    (LLAMA3, "llama3_json", None, [("f", {"a": "x;y"}), ("g", {})]),
])
def test_whole_and_streamed_replies_give_the_same_calls(text, format, content, calls):
    parsed_content, parsed = parse_tool_calls(text, format)
    assert parsed_content == content
    assert [(c.name, json.loads(c.arguments)) for c in parsed] == calls
    for seed in range(30):
        streamed_content, names, arguments, headers = _streamed(text, format, seed)
        assert streamed_content.strip() == (content or "")
        assert headers == list(range(len(calls)))
        assert [(names[i], json.loads(arguments[i])) for i in range(len(calls))] == calls


@pytest.mark.parametrize(("text", "format"), [
    ("Just words.", "hermes"), ("<tool_call>{not json</tool_call>", "hermes"), ("Hello {x}", "llama3_json"),
    ('{"no_name": 1}', "llama3_json"), ("The tag <tool_ is not a tag", "hermes")])
def test_replies_without_a_valid_call_stay_content(text, format):
    assert parse_tool_calls(text, format) == (text, [])
    content, names, _, _ = _streamed(text, format, 0)
    if not names:
        assert content == text
