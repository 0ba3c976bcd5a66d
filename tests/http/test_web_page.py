"""The bundled chat page in a real headless Chromium against real servers: chatting.

Most tests use the generator mock's `echo` type, so a reply is the user's own Markdown coming
back a word at a time: what the page renders is predictable. One test runs the bundled SmolLM2
(greedy) through send, Stop, Regenerate and New chat, and checks the server's side (history, the
freed run slot) through the page's own session cookie. The error paths, the settings, the
languages and the accessibility checks have their own files (test_web_page_*.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest

from chatstream import ChatPromptChatTemplate, ChatStream
from live_server import OPEN_ROLES, LiveServer
from web_page_support import (
    LAST_REPLY, TIMEOUT_MS, WELCOME, artifacts, browser, clipboard, echo_chat_stream, focused, get_json,  # noqa: F401
    page_app, page_conversation_id, page_on, send, server_prompt, wait_for, wait_idle, wait_synced)

MARKDOWN = ("# Shopping\n\nBuy **milk** and `eggs`, see [the shop](https://example.com/shop).\n\n- apples\n- pears\n\n"
            "| fruit | count |\n|---|---|\n| apple | 3 |\n\n```python\ndef total(items):\nreturn sum(items)\n```")
XSS = '<img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script> [click](javascript:window.__pwned=3)'


@pytest.fixture(scope="module")
def echo_server() -> Iterator[tuple[LiveServer, ChatStream, list[dict[str, Any]]]]:
    feedback: list[dict[str, Any]] = []
    chat_stream = echo_chat_stream(time_per_token_sec=0.02)
    app = page_app(chat_stream, set_feedback_opts={"on_feedback_received": feedback.append})
    with LiveServer(app) as server:
        yield server, chat_stream, feedback


def _to_fixed(value: float, digits: int) -> str:
    """JavaScript's `value.toFixed(digits)`: the float's exact value, halves rounded up."""
    return str(Decimal(value).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def _reply_record(chat_stream: ChatStream, page: Any) -> Any:
    message_id = page.get_attribute(LAST_REPLY, "data-message-id")
    assert message_id
    return chat_stream.chat_generator.replies.find(message_id)


def test_markdown_renders_while_streaming_with_highlighted_code_and_copy_buttons(echo_server, page_on, artifacts):
    server, chat_stream, _ = echo_server
    page = page_on(server.url)
    page.evaluate("""() => {
        window.__renderedWhileStreaming = false;
        window.__busyInLiveRegion = false;
        new MutationObserver(() => {
            const reply = document.querySelector('#cs-messages > .cs-assistant:last-child[data-streaming="true"]');
            if (reply && reply.querySelector('.cs-content h1, .cs-content li')) window.__renderedWhileStreaming = true;
            // The streaming reply sits in the live region, marked busy so it is read once, whole.
            const live = reply && reply.closest('[role="log"][aria-live="polite"]');
            if (live && reply.getAttribute('aria-busy') === 'true') window.__busyInLiveRegion = true;
        }).observe(document.getElementById('cs-messages'), {subtree: true, childList: true});
    }""")
    send(page, MARKDOWN)
    reply = wait_synced(page)
    assert page.evaluate("window.__renderedWhileStreaming"), "Markdown must render while the reply streams"
    assert page.evaluate("window.__busyInLiveRegion")
    assert reply.get_attribute("aria-busy") is None
    assert page.inner_text("#cs-live") == "Reply complete"
    content = reply.locator(".cs-content")
    assert content.locator("h1").inner_text() == "Shopping"
    assert content.locator("strong").inner_text() == "milk"
    assert content.locator("p code").inner_text() == "eggs"
    link = content.locator("a")
    assert link.get_attribute("href") == "https://example.com/shop"
    assert link.get_attribute("target") == "_blank" and "noopener" in link.get_attribute("rel")
    assert content.locator("li").all_inner_texts() == ["apples", "pears"]
    assert content.locator("th").all_inner_texts() == ["fruit", "count"]
    assert content.locator("td").all_inner_texts() == ["apple", "3"]
    code = content.locator(".cs-code pre code")
    assert "hljs" in code.get_attribute("class") and code.locator("span.hljs-keyword").count() >= 2
    assert content.locator(".cs-code-bar").inner_text().startswith("python")
    page.screenshot(path=str(artifacts / "web_page_markdown.png"))

    content.locator(".cs-code-copy").click()
    assert clipboard(page) == "def total(items):\nreturn sum(items)\n"
    assert content.locator(".cs-code-copy").inner_text() == "Copied"
    reply.locator(".cs-copy-reply").click()
    assert clipboard(page) == MARKDOWN
    # The statistics are the server's: the mock streamed one token per word.
    record = _reply_record(chat_stream, page)
    assert record.num_output_tokens == len(MARKDOWN.split(" "))
    # Tokens, tokens/s and time to first token are the server's figures (/get_reply_stats), as it sent them.
    query = f"get_reply_stats?message_id={record.message_id}&conversation_id={page_conversation_id(page)}"
    stats = get_json(page, query)["stats"]
    assert stats["num_output_tokens"] == record.num_output_tokens and stats["tokens_per_sec"] > 0
    assert reply.locator(".cs-stats").inner_text() == (
        f"{record.num_output_tokens} tokens · {_to_fixed(stats['tokens_per_sec'], 1)} tokens/s · "
        f"first token {_to_fixed(stats['time_to_first_token_sec'], 2)} s")


def test_html_and_scripts_in_a_reply_show_as_text_and_never_run(echo_server, page_on):
    server, _, _ = echo_server
    page = page_on(server.url)
    send(page, XSS)
    reply = wait_synced(page)
    content = reply.locator(".cs-content")
    assert '<img src=x onerror="window.__pwned=1">' in content.inner_text()
    assert "<script>window.__pwned=2</script>" in content.inner_text()
    assert content.locator("img, script, iframe, [onerror]").count() == 0
    assert content.locator("a[href^='javascript']").count() == 0
    page.click(LAST_REPLY + " .cs-content", position={"x": 5, "y": 5})
    assert page.evaluate("window.__pwned") is None
    # The user's own message is text too.
    assert page.locator("#cs-messages > .cs-user .cs-content").inner_text() == XSS
    assert page.locator("#cs-messages img").count() == 0


def test_stop_and_escape_show_exactly_the_text_the_server_kept(page_on):
    chat_stream = echo_chat_stream(time_per_token_sec=0.05)
    words = " ".join(f"word{i}" for i in range(400))
    with LiveServer(page_app(chat_stream)) as server:
        page = page_on(server.url)
        for how in ("button", "escape"):
            send(page, words)
            page.wait_for_function("""() => {
                const r = document.querySelector('#cs-messages > .cs-assistant:last-child[data-streaming="true"]');
                return r !== null && r.querySelector('.cs-content').textContent.length >= 30;
            }""", timeout=TIMEOUT_MS)
            assert page.evaluate("document.body.dataset.state") == "streaming"
            if how == "button":
                page.click("#cs-stop")
            else:
                page.keyboard.press("Escape")
            reply = wait_synced(page)
            assert focused(page) == "cs-input", f"after Stop ({how}) focus must not fall to the page"
            assert reply.locator(".cs-note").inner_text() == "Stopped"
            record = _reply_record(chat_stream, page)
            assert record.finish_reason == "abort" and 0 < record.num_output_tokens < 400
            shown = reply.locator(".cs-content").inner_text()
            assert shown == record.text and words.startswith(shown)
            assert server_prompt(page).endswith(f"<bot>: {shown}\n")  # the history's last reply
            wait_for(lambda: chat_stream.admission.num_running == 0)


def test_like_and_dislike_reach_the_feedback_callback(echo_server, page_on):
    server, _, feedback = echo_server
    page = page_on(server.url)
    send(page, "Tell me a **joke**")
    reply = wait_synced(page)
    message_id = reply.get_attribute("data-message-id")
    before = len(feedback)

    reply.locator(".cs-like").click()
    wait_for(lambda: len(feedback) == before + 1)
    assert feedback[-1]["is_like"] is True and feedback[-1]["target_message_id"] == message_id
    assert feedback[-1]["target_message"] == "Tell me a **joke**"
    assert reply.locator(".cs-like").get_attribute("aria-pressed") == "true"

    reply.locator(".cs-dislike").click()
    wait_for(lambda: len(feedback) == before + 2)
    assert feedback[-1]["is_like"] is False
    assert reply.locator(".cs-like").get_attribute("aria-pressed") == "false"
    assert reply.locator(".cs-dislike").get_attribute("aria-pressed") == "true"

    reply.locator(".cs-dislike").click()  # pressed again: taken back
    wait_for(lambda: len(feedback) == before + 3)
    assert feedback[-1]["is_like"] is None
    assert reply.locator(".cs-dislike").get_attribute("aria-pressed") == "false"


def test_keyboard_alone_sends_stops_regenerates_and_keeps_focus(page_on):
    chat_stream = echo_chat_stream(time_per_token_sec=0.03)
    with LiveServer(page_app(chat_stream)) as server:
        page = page_on(server.url)
        assert focused(page) == "cs-input"
        page.keyboard.type("first line")
        page.keyboard.press("Shift+Enter")
        page.keyboard.type("second line")
        assert page.input_value("#cs-input") == "first line\nsecond line"
        assert page.locator("#cs-messages > .cs-user").count() == 0
        page.keyboard.press("Enter")
        wait_synced(page)
        assert page.locator("#cs-messages > .cs-user .cs-content").inner_text() == "first line\nsecond line"
        assert focused(page) == "cs-input"

        # Tab walks the controls in reading order, from the header through the conversation list to Send
        # (the last one on the page).
        page.focus("#cs-conversations-toggle")
        order = [focused(page)]
        while order[-1] != "cs-send" and len(order) < 20:
            page.keyboard.press("Tab")
            order.append(focused(page))
        assert order == ["cs-conversations-toggle", "cs-settings-toggle", "cs-clear", "BUTTON.cs-conv-open",
                         "BUTTON.cs-tool.cs-conv-rename", "A.cs-tool.cs-conv-export", "BUTTON.cs-tool.cs-conv-delete",
                         "BUTTON.cs-tool.cs-edit", "BUTTON.cs-tool.cs-copy-reply", "BUTTON.cs-tool.cs-like",
                         "BUTTON.cs-tool.cs-dislike", "cs-regenerate", "cs-input", "cs-send"], order

        # Regenerate from the keyboard: focus goes to Stop while the reply streams, then back to the box.
        page.evaluate("""() => {
            window.__focusByState = [];
            new MutationObserver(() => window.__focusByState.push(
                [document.body.dataset.state, document.activeElement.id || document.activeElement.tagName])
            ).observe(document.body, {attributes: true, attributeFilter: ['data-state']});
        }""")
        page.focus("#cs-regenerate")
        page.keyboard.press("Enter")
        wait_synced(page)
        wait_idle(page)
        assert page.evaluate("window.__focusByState") == [["streaming", "cs-stop"], ["idle", "cs-input"]]
        assert focused(page) == "cs-input"
        assert page.locator("#cs-messages > .cs-assistant").count() == 2  # the welcome and one reply

        # Stop from the keyboard, with focus on the Stop button itself.
        send(page, " ".join(["long"] * 300))
        page.wait_for_selector("#cs-stop:not([hidden])")
        page.focus("#cs-stop")
        page.keyboard.press("Enter")
        wait_idle(page)
        assert focused(page) == "cs-input"


@pytest.mark.slow
def test_the_real_model_streams_stops_regenerates_and_clears(smollm2_dir: Path, page_on, artifacts) -> None:
    chat_stream = ChatStream(model=str(smollm2_dir), chat_prompt_clazz=ChatPromptChatTemplate, temperature=0.0,
                             max_new_tokens=300, context_len=2048, num_kv_blocks=256, client_roles=OPEN_ROLES)
    try:
        with LiveServer(page_app(chat_stream)) as server:
            page = page_on(server.url)
            assert page.title() == "Web page test"
            assert page.inner_text(LAST_REPLY + " .cs-content").strip() == WELCOME
            assert page.is_hidden("#cs-regenerate")  # the welcome is not a reply

            send(page, "What is the capital of France?")
            reply = wait_synced(page)
            assert "Paris" in reply.locator(".cs-content").inner_text()
            assert page.is_visible("#cs-regenerate") and page.is_hidden("#cs-stop")
            record = _reply_record(chat_stream, page)
            assert record.finish_reason == "stop" and record.time_to_first_token_sec is not None
            assert reply.locator(".cs-stats").inner_text().startswith(f"{record.num_output_tokens} tokens")
            page.screenshot(path=str(artifacts / "web_page_reply.png"))

            # Stop: the page ends up showing exactly what the server kept in the history.
            send(page, "Write a long story about a dragon.")
            page.wait_for_function("""() => {
                const r = document.querySelector('#cs-messages > .cs-assistant:last-child[data-streaming="true"]');
                return r !== null && r.querySelector('.cs-content').textContent.length >= 40;
            }""", timeout=TIMEOUT_MS)
            page.click("#cs-stop")
            stopped = wait_synced(page)
            assert focused(page) == "cs-input"
            record = _reply_record(chat_stream, page)
            assert record.finish_reason == "abort"
            stopped.locator(".cs-copy-reply").click()
            assert clipboard(page) == record.text
            assert record.text in server_prompt(page)
            wait_for(lambda: chat_stream.admission.num_running == 0 and not chat_stream.engine.core.requests)

            # Regenerate replaces the stopped reply; the history holds one reply for that turn.
            stopped.evaluate("(el) => { el.dataset.old = 'true'; }")
            page.click("#cs-regenerate")
            page.wait_for_function("() => document.querySelector('[data-old]') === null", timeout=TIMEOUT_MS)
            wait_idle(page)
            new_reply = wait_synced(page)
            assert new_reply.locator(".cs-note").count() == 0
            assert page.locator("#cs-messages > .cs-assistant").count() == 3  # welcome, Paris, the new story
            prompt = server_prompt(page)
            assert prompt.count("Write a long story about a dragon.") == 1
            assert prompt.count("<|im_start|>assistant") == 2
            assert _reply_record(chat_stream, page).text in prompt

            # New chat: only the welcome is left, here and on the server.
            page.click("#cs-clear")
            page.wait_for_function("() => document.querySelectorAll('#cs-messages > .cs-msg').length === 1")
            wait_idle(page)
            assert page.inner_text(LAST_REPLY + " .cs-content").strip() == WELCOME
            assert server_prompt(page) is None
            assert focused(page) == "cs-input"
    finally:
        chat_stream.shutdown()
