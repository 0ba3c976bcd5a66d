"""`chatstream chat --url`'s session: the console chat over a real server's OpenAI API (a tiny random
model behind uvicorn), driven with scripted lines. What each turn sends is read off the wire."""

from __future__ import annotations

import asyncio
import io
import json
import time

import httpx
import pytest
from fastapi import FastAPI
from openai import AsyncOpenAI

from chatstream import ChatPromptChatTemplate, ChatStream
from chatstream.commands.remote_chat import RemoteChatSession, api_base_url, choose_model
from chatstream.facade.console import REPLY_PREFIX, ConsoleChat
from chatstream.http.openai_routes import add_openai_routes
from chatstream.http.server_state import ServerState
from live_server import LiveServer

TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture(scope="module")
def served(tiny_model_factory):
    model, tokenizer = tiny_model_factory("llama")
    tokenizer.chat_template = TEMPLATE
    chat_stream = ChatStream(model=model, tokenizer=tokenizer, chat_prompt_clazz=ChatPromptChatTemplate,
                             num_kv_blocks=64, num_of_concurrent_executions=1, max_queue_size=0)
    state = ServerState(model_name="tiny")
    state.set_ready(chat_stream)
    app = FastAPI()
    app.state.server = state
    add_openai_routes(app)
    with LiveServer(app) as server:
        yield server, chat_stream
    chat_stream.shutdown()


def scripted(lines: list):
    pending = list(lines)

    def input_fn(_prompt: str) -> str:
        if not pending:
            raise EOFError
        return pending.pop(0)

    return input_fn


def run_chat(url: str, lines: list, params: dict | None = None, output: io.StringIO | None = None,
             on_session=None) -> tuple[RemoteChatSession, str, list[dict]]:
    sent: list[dict] = []

    async def record(request: httpx.Request) -> None:
        if request.url.path.endswith("/chat/completions"):
            sent.append(json.loads(request.content))

    async def main() -> RemoteChatSession:
        http = httpx.AsyncClient(event_hooks={"request": [record]})
        client = AsyncOpenAI(base_url=api_base_url(url), api_key="unused", max_retries=0, http_client=http)
        session = RemoteChatSession(client, await choose_model(client, "smollm2"),
                                    params=params or {"max_tokens": 8, "temperature": 0})
        console = ConsoleChat(session, input_fn=scripted(lines), output=output or io.StringIO())
        if on_session is not None:
            on_session(console)
        await console.run()
        await client.close()
        return session

    output = output or io.StringIO()
    session = asyncio.run(main())
    return session, output.getvalue(), sent


def test_turns_system_and_clear_go_to_the_server_as_openai_messages(served) -> None:
    server, _ = served
    out = io.StringIO()
    session, _, sent = run_chat(server.url, ["hello", "/system Be brief.", "again", "/clear", "fresh"], output=out)
    text = out.getvalue()
    assert text.count(REPLY_PREFIX) == 3 and "(system text set)" in text and "(new conversation)" in text
    assert "[finish_reason=length · 8 new tokens · prompt " in text
    first, second, third = (body["messages"] for body in sent)
    assert all(body["model"] == "tiny" and body["stream"] for body in sent)  # the only served model
    assert first == [{"role": "user", "content": "hello"}]
    assert second[0] == {"role": "system", "content": "Be brief."} and second[1]["content"] == "hello"
    assert second[2]["role"] == "assistant" and second[2]["content"] and second[-1]["content"] == "again"
    assert third == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "fresh"}]
    assert [m["role"] for m in session.messages] == ["user", "assistant"]


def test_a_stopped_reply_keeps_what_was_shown_and_frees_the_servers_slot(served) -> None:
    server, chat_stream = served

    class StopAfterText(io.StringIO):
        console: ConsoleChat | None = None

        def write(self, text: str) -> int:
            count = super().write(text)
            if self.console is not None and text and not text.startswith(REPLY_PREFIX) and "\n" not in text:
                self.console.cancel_reply()
                self.console = None
            return count

    out = StopAfterText()
    session, text, _ = run_chat(server.url, ["tell me a long story"], params={"max_tokens": 500, "temperature": 0},
                                output=out, on_session=lambda console: setattr(out, "console", console))
    assert "[interrupted]" in out.getvalue()
    shown = out.getvalue().split(REPLY_PREFIX, 1)[1].split("\n", 1)[0]
    assert session.messages == [{"role": "user", "content": "tell me a long story"},
                                {"role": "assistant", "content": shown}]
    deadline = time.monotonic() + 30
    while chat_stream.admission.num_running or chat_stream.engine.stats.num_running:
        assert time.monotonic() < deadline, "the server kept running the stopped reply"
        time.sleep(0.05)


def test_a_failed_turn_says_why_and_leaves_no_trace(served) -> None:
    server, _ = served
    out = io.StringIO()
    session, _, _ = run_chat(server.url, ["hi"], params={"max_tokens": -5}, output=out)
    assert "error: " in out.getvalue() and "max_tokens" in out.getvalue()
    assert session.messages == []


def test_base_url_forms() -> None:
    assert api_base_url("http://h:1") == api_base_url("http://h:1/") == api_base_url("http://h:1/v1") == "http://h:1/v1"
