"""Conversations that outlive the server process, with `chatstream serve` as users run it (the
default store: an SQLite file in the data directory):

- stopped and started again, a conversation goes on: the page shows it after a reload (a real
  Chromium, the same browser), and the model receives the whole history, continued from the
  stored token ids (the server's debug log says so, with their number);
- killed with SIGKILL while a reply streams (the bundled SmolLM2, slow): the store opens cleanly,
  the completed turn is there, the interrupted reply is kept with the text it had and reads as
  interrupted, and the conversation goes on.
"""

from __future__ import annotations

import re
import sqlite3
import time
import urllib.parse
from pathlib import Path

import pytest

from live_server import read_chat_stream, session_client
from serve_process import ServeProcess
from web_page_support import (  # noqa: F401
    LAST_REPLY, artifacts, browser, page_conversation_id, send, server_prompt, wait_idle, wait_synced)

TINY_ARGS = ["--chat-prompt", "chat_template", "--max-new-tokens", "8", "--temperature", "0", "--num-kv-blocks", "64",
             "--max-model-len", "512"]


@pytest.mark.slow  # two server starts
def test_a_conversation_goes_on_after_a_restart(tiny_model_dir: Path, tmp_path: Path, browser) -> None:
    data, log = tmp_path / "data", tmp_path / "serve.log"
    server = ServeProcess(["--model", str(tiny_model_dir), *TINY_ARGS], data, log, log_level="DEBUG")
    context = browser.new_context()
    try:
        server.start()
        page = context.new_page()
        page.goto(server.url + "/")
        wait_idle(page)
        send(page, "the quick brown fox")
        wait_synced(page)
        wait_idle(page)
        conversation_id = page_conversation_id(page)
        before = page.locator("#cs-messages > .cs-msg .cs-content").all_inner_texts()
        assert before[-2] == "the quick brown fox"
        assert server.stop() in (0, -15)
        assert (data / "conversations.sqlite3").is_file() and (data / "session-secret").is_file()

        server.start()  # a new process, another port; the same data directory, the same browser
        page.goto(f"{server.url}/#c={conversation_id}")
        wait_idle(page)
        assert page.locator("#cs-messages > .cs-msg .cs-content").all_inner_texts() == before[-2:]
        assert page.locator(f"[data-id='{conversation_id}'] .cs-conv-open").get_attribute("aria-current") == "true"
        send(page, "once upon a time")
        wait_synced(page)
        wait_idle(page)
        first_reply, second_reply = page.locator("#cs-messages > .cs-assistant").all()
        first_id = first_reply.get_attribute("data-message-id")
        second_id = second_reply.get_attribute("data-message-id")
        messages = page.evaluate("(id) => fetch('conversations/' + id).then((r) => r.json())", conversation_id)
        stats = messages["messages"][1]["stats"]
        earlier = stats["prompt_tokens"] + stats["completion_tokens"]
        # The second turn's prompt was the first turn's stored ids (all of them) plus the new turn.
        match = re.search(rf"turn {second_id}: continued from (\d+) stored ids \+ (\d+) new", log.read_text())
        assert match and int(match.group(1)) == earlier, log.read_text()[-2000:]
        assert messages["messages"][3]["stats"]["prompt_tokens"] == earlier + int(match.group(2))
        prompt = server_prompt(page)
        assert "the quick brown fox" in prompt and "once upon a time" in prompt
        assert first_id != second_id
    finally:
        context.close()
        server.close()


@pytest.mark.slow
def test_a_kill_during_a_streamed_reply_keeps_what_was_stored(smollm2_dir: Path, tmp_path: Path) -> None:
    data, log = tmp_path / "data", tmp_path / "serve.log"
    server = ServeProcess(["--model", str(smollm2_dir), "--max-new-tokens", "400", "--temperature", "0",
                           "--num-kv-blocks", "256"], data, log)
    try:
        server.start()
        with session_client(server.url) as client:
            created = client.post("/conversations", json={})
            conversation_id, cookie = created.json()["id"], created.headers["set-cookie"].split(";")[0]
            answer = read_chat_stream(client.post("/chat_stream", json={
                "user_input": "What is the capital of France?", "conversation_id": conversation_id}))[-1]
            seen = ""
            with client.stream("POST", "/chat_stream", json={
                    "user_input": "Write a long story about a dragon.", "conversation_id": conversation_id}) as held:
                started = None
                chunks = held.iter_text()  # held past the loop: a dropped one would disconnect before the kill
                for chunk in chunks:
                    segments = chunk.split("<::EOS::>")
                    seen = next((s for s in reversed(segments[:-1]) if s), seen)
                    if len(seen) >= 40 and started is None:
                        started = time.monotonic()
                    if started is not None and time.monotonic() - started > 2.5:  # the text was stored meanwhile
                        break
                server.kill()

        with sqlite3.connect(data / "conversations.sqlite3") as db:  # the file is whole
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        server.start()
        with session_client(server.url, headers={"Cookie": cookie}) as client:
            deadline = time.monotonic() + 40  # the reply's lease (15 s) must run out before it reads as interrupted
            while True:
                messages = client.get(f"/conversations/{conversation_id}").json()["messages"]
                if messages[-1]["status"] == "interrupted" or time.monotonic() > deadline:
                    break
                time.sleep(1)
            assert [(m["role"], m["status"]) for m in messages] == [
                ("user", "complete"), ("assistant", "complete"), ("user", "complete"), ("assistant", "interrupted")]
            assert messages[1]["text"] == answer
            kept = messages[3]["text"]
            assert len(kept) >= 40 and (seen.startswith(kept) or kept.startswith(seen)), (kept, seen)
            # The conversation goes on, with all of it in the prompt.
            reply = read_chat_stream(client.post("/chat_stream", json={
                "user_input": "Thank you!", "conversation_id": conversation_id}))[-1]
            assert reply
            prompt = client.get("/get_prompt", params={"conversation_id": conversation_id}).json()["prompt"]
            text = urllib.parse.unquote(prompt)
            assert "capital of France" in text and kept[:30] in text and "Thank you!" in text
    finally:
        server.close()
