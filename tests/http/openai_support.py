"""A tiny model served over real HTTP for the OpenAI feature tests, with chat templates that take tools.

The tiny tokenizer ships no chat template; these two teach the two tool-call formats the server
parses: `HERMES_TEMPLATE` asks for `<tool_call>{json}</tool_call>` blocks, `LLAMA3_TEMPLATE` for a
bare JSON object with "parameters". Both render tool results and earlier calls, so histories
with `role: "tool"` and assistant `tool_calls` go through them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import openai
from fastapi import FastAPI

from chatstream import ChatPromptChatTemplate, ChatStream
from chatstream.http.openai_routes import add_openai_routes
from chatstream.http.server_state import ServerState
from live_server import LiveServer

HERMES_TEMPLATE = (
    "{%- if tools %}<|system|>Tools you may call:\n{% for t in tools %}{{ t['function']['name'] }}\n{% endfor %}"
    "Call one as <tool_call>{\"name\": ..., \"arguments\": ...}</tool_call>\n{% endif %}"
    "{%- for m in messages %}"
    "{%- if m['role'] == 'tool' %}<|tool|>{{ m['content'] }}\n"
    "{%- elif m.get('tool_calls') %}<|assistant|>{% for c in m['tool_calls'] %}<tool_call>"
    "{{ {'name': c['function']['name'], 'arguments': c['function']['arguments']} | tojson }}</tool_call>"
    "{% endfor %}\n"
    "{%- else %}<|{{ m['role'] }}|>{{ m['content'] }}\n{%- endif %}"
    "{%- endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")

LLAMA3_TEMPLATE = (
    "{%- if tools %}<|system|>Reply with JSON {\"name\": function name, \"parameters\": arguments} to call:\n"
    "{% for t in tools %}{{ t['function']['name'] }}\n{% endfor %}{% endif %}"
    "{%- for m in messages %}"
    "{%- if m['role'] == 'tool' %}<|ipython|>{{ m['content'] }}\n"
    "{%- elif m.get('tool_calls') %}<|assistant|>{% for c in m['tool_calls'] %}"
    "{{ {'name': c['function']['name'], 'parameters': c['function']['arguments']} | tojson }}{% endfor %}\n"
    "{%- else %}<|{{ m['role'] }}|>{{ m['content'] }}\n{%- endif %}"
    "{%- endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {
        "city": {"enum": ["Paris", "Tokyo", "Lima"]}, "days": {"type": "integer", "minimum": 1, "maximum": 7}},
        "required": ["city", "days"], "additionalProperties": False}}}
TIME_TOOL = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"zone": {"type": "string", "maxLength": 8}}, "required": ["zone"],
    "additionalProperties": False}}}


@dataclass
class Served:
    url: str
    chat_stream: ChatStream
    state: ServerState

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0, timeout=120)


@contextmanager
def serve_tiny(factory, family: str = "qwen2", template: str = HERMES_TEMPLATE, **options) -> Iterator[Served]:
    model, tokenizer = factory(family)
    tokenizer.chat_template = template
    chat_stream = ChatStream(model=model, tokenizer=tokenizer, chat_prompt_clazz=ChatPromptChatTemplate,
                             num_kv_blocks=256, num_of_concurrent_executions=4, max_queue_size=8, **options)
    state = ServerState(model_name="tiny")
    state.set_ready(chat_stream)
    app = FastAPI()
    app.state.server = state
    add_openai_routes(app)
    try:
        with LiveServer(app) as server:
            yield Served(server.url, chat_stream, state)
    finally:
        chat_stream.shutdown()
