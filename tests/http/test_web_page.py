"""The bundled chat page in a real headless Chromium, against real servers.

One server runs the engine with the bundled SmolLM2 (greedy, so its answers are stable); the page
is driven the way a user drives it: type and press Enter, Stop, Regenerate, Shift+Enter, the
settings panel and Clear conversation. The server's side (history, session parameters, the freed
run slot) is checked through the page's own session cookie. A second, mock-mode server with a
single run slot and no queue checks that a refused request (429) shows the busy message.

Needs the `playwright` Python package and a Chromium binary (`CHROMIUM` or `chromium` on PATH);
no browser download is used. Screenshots go to $CHATSTREAM_TEST_ARTIFACTS (default
`test-artifacts/`).
"""

from __future__ import annotations

import os
import shutil
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from chatstream import ChatPromptChatTemplate, ChatPromptTogetherRedPajamaINCITEChat, ChatStream
from live_server import LiveServer, session_client

pytestmark = pytest.mark.slow

WELCOME = "Hello! Ask me anything."
TIMEOUT_MS = 60_000
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

LAST_ASSISTANT = "#cs-messages > .cs-msg.cs-assistant:last-child"
IS_IDLE = "() => document.body.dataset.state === 'idle'"


# -- fixtures ----------------------------------------------------------------------------------------------------------

def _chromium_path() -> str | None:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    return path if path and Path(path).exists() else None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium_path()
    if os.environ.get("CI"):
        # CI installs both (README's test command); there a missing browser is a failure, not a skip.
        from playwright import sync_api

        assert executable is not None, "CI must have chromium installed (see the README's test command)"
    else:
        sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
        if executable is None:
            pytest.skip(f"no Chromium found: set CHROMIUM (now {os.environ.get('CHROMIUM')!r}) or put it on PATH")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    folder = Path(os.environ.get("CHATSTREAM_TEST_ARTIFACTS", "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _app(chat_stream: ChatStream) -> FastAPI:
    app = FastAPI()
    chat_stream.append_middlewares(app)
    chat_stream.append_apis(app, {"all": True, "web_ui_params": {"welcomeMessage": WELCOME, "title": "Web page test"}})
    return app


@pytest.fixture(scope="module")
def served(smollm2_dir: Path) -> Iterator[tuple[LiveServer, ChatStream]]:
    chat_stream = ChatStream(model=str(smollm2_dir), chat_prompt_clazz=ChatPromptChatTemplate, temperature=0.0,
                             max_new_tokens=300, context_len=2048, num_kv_blocks=256)
    try:
        with LiveServer(_app(chat_stream)) as server:
            yield server, chat_stream
    finally:
        chat_stream.shutdown()


@pytest.fixture
def page_on(browser: Any, artifacts: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """`page_on(url)`: a fresh browser context (so a fresh session) with the page loaded and ready."""
    contexts = []

    def open_page(url: str) -> Any:
        context = browser.new_context(viewport={"width": 1000, "height": 800})
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.goto(url + "/")
        # init() clears the server context before it shows the welcome: once it is there, the page is ready.
        page.wait_for_selector("#cs-messages > .cs-assistant[data-welcome='true']")
        return page

    yield open_page
    for index, context in enumerate(contexts):
        for number, page in enumerate(context.pages):
            try:
                page.screenshot(path=str(artifacts / f"web_page_{request.node.name}_{index}_{number}_end.png"))
            except Exception:  # noqa: BLE001 - a screenshot must not hide the test's own result
                pass
        context.close()


# -- helpers -----------------------------------------------------------------------------------------------------------

def _get_json(page: Any, endpoint: str) -> dict[str, Any]:
    """GET an API through the page, so with the page's own session cookie."""
    return page.evaluate("(e) => fetch(e, {cache: 'no-store'}).then((r) => r.json())", endpoint)


def _prompt(page: Any) -> str | None:
    prompt = _get_json(page, "get_prompt")["prompt"]
    return None if prompt is None else urllib.parse.unquote(prompt)


def _wait_idle(page: Any) -> None:
    page.wait_for_function(IS_IDLE, timeout=TIMEOUT_MS)


def _send(page: Any, text: str) -> None:
    page.fill("#cs-input", text)
    page.press("#cs-input", "Enter")


def _record_streaming(page: Any) -> None:
    """Record (data-streaming, text) of the last assistant bubble on every change of the message list."""
    page.evaluate("""() => {
        window.__csSeen = [];
        const messages = document.getElementById('cs-messages');
        const note = () => {
            const bubbles = messages.querySelectorAll('.cs-assistant');
            const last = bubbles[bubbles.length - 1];
            if (last) window.__csSeen.push([last.dataset.streaming || '', last.querySelector('.cs-text').textContent]);
        };
        window.__csObserver = new MutationObserver(note);
        window.__csObserver.observe(messages, {subtree: true, childList: true, characterData: true, attributes: true});
    }""")


def _wait_for(predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


# -- tests -------------------------------------------------------------------------------------------------------------

def test_send_stop_regenerate_and_clear(served, page_on, artifacts: Path) -> None:
    server, chat_stream = served
    page = page_on(server.url)
    assert page.title() == "Web page test"
    assert page.locator("#cs-messages > .cs-msg").count() == 1
    assert page.inner_text(LAST_ASSISTANT).strip() == WELCOME
    assert page.is_hidden("#cs-regenerate")  # the welcome is not a reply

    # 1. Enter sends; the reply streams into one bubble and ends with the answer.
    _record_streaming(page)
    _send(page, "What is the capital of France?")
    page.wait_for_selector("#cs-messages > .cs-user")
    _wait_idle(page)
    reply = page.locator(LAST_ASSISTANT)
    assert "Paris" in reply.locator(".cs-text").inner_text()
    assert reply.get_attribute("data-streaming") == "false"
    seen = page.evaluate("window.__csSeen")
    streamed_texts = [text for state, text in seen if state == "true"]
    assert streamed_texts, f"the bubble was never marked as streaming: {seen}"
    assert page.input_value("#cs-input") == ""
    assert page.is_visible("#cs-regenerate") and page.is_hidden("#cs-stop")
    page.screenshot(path=str(artifacts / "web_page_reply.png"))

    # 2. Stop keeps the partial text, marks it, and the server lets the generation go.
    _record_streaming(page)
    _send(page, "Write a long story about a dragon.")
    page.wait_for_function(
        """() => {
            const b = document.querySelector('#cs-messages > .cs-assistant:last-child[data-streaming="true"] .cs-text');
            return b !== null && b.textContent.length >= 40;
        }""", timeout=TIMEOUT_MS)
    assert page.is_visible("#cs-stop") and page.is_disabled("#cs-send")
    assert page.evaluate("document.body.dataset.state") == "streaming"
    page.click("#cs-stop")
    _wait_idle(page)
    stopped = page.locator(LAST_ASSISTANT)
    partial = stopped.locator(".cs-text").inner_text()
    assert len(partial) >= 40
    assert stopped.locator(".cs-note").inner_text().strip() == "(stopped)"
    assert page.locator("#cs-messages > .cs-error").count() == 0
    grew = [text for state, text in page.evaluate("window.__csSeen") if state == "true" and text]
    assert len(set(grew)) >= 2, "the text should grow while streaming, not arrive at once"
    _wait_for(lambda: chat_stream.admission.num_running == 0 and not chat_stream.engine.core.requests)
    assert chat_stream.chat_generator.records[-1].finish_reason == "abort"
    page.screenshot(path=str(artifacts / "web_page_stopped.png"))

    # 3. Regenerate replaces the stopped reply; the history holds one reply for that turn.
    stopped.evaluate("(el) => { el.dataset.old = 'true'; }")
    assert page.is_visible("#cs-regenerate")
    page.click("#cs-regenerate")
    page.wait_for_function("() => document.querySelector('[data-old]') === null", timeout=TIMEOUT_MS)
    _wait_idle(page)
    assert page.locator("#cs-messages > .cs-error").count() == 0
    assert page.locator("#cs-messages > .cs-assistant").count() == 3  # welcome, Paris, the new story
    assert page.locator("#cs-messages > .cs-user").count() == 2
    new_reply = page.locator(LAST_ASSISTANT)
    assert new_reply.locator(".cs-note").count() == 0
    new_text = new_reply.locator(".cs-text").inner_text().strip()
    assert new_text
    prompt = _prompt(page)
    assert prompt is not None
    assert prompt.count("Write a long story about a dragon.") == 1
    assert prompt.count("<|im_start|>assistant") == 2  # one reply per turn: the stopped one is gone
    after_question = prompt.split("Write a long story about a dragon.", 1)[1]
    assert new_text[:60] in after_question
    assert "Paris" in prompt.split("Write a long story about a dragon.", 1)[0]
    _wait_for(lambda: chat_stream.admission.num_running == 0)
    page.screenshot(path=str(artifacts / "web_page_regenerated.png"))

    # 7. Clear conversation: only the welcome is left, here and on the server.
    page.click("#cs-clear")
    page.wait_for_function("() => document.querySelectorAll('#cs-messages > .cs-msg').length === 1",
                           timeout=TIMEOUT_MS)
    page.wait_for_function("() => !document.getElementById('cs-clear').disabled", timeout=TIMEOUT_MS)
    assert page.inner_text(LAST_ASSISTANT).strip() == WELCOME
    assert page.locator("#cs-messages > .cs-error").count() == 0
    assert page.is_hidden("#cs-regenerate")
    assert _prompt(page) is None
    page.screenshot(path=str(artifacts / "web_page_cleared.png"))


def test_shift_enter_adds_a_line_without_sending(served, page_on) -> None:
    server, _ = served
    page = page_on(server.url)
    page.click("#cs-input")
    page.keyboard.type("first line")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    assert page.input_value("#cs-input") == "first line\nsecond line"
    assert page.locator("#cs-messages > .cs-user").count() == 0
    assert page.evaluate("document.body.dataset.state") == "idle"
    assert _prompt(page) is None


def test_settings_panel_saves_to_the_session_and_rejects_out_of_range(served, page_on, artifacts: Path) -> None:
    server, chat_stream = served
    page = page_on(server.url)
    assert page.is_hidden("#cs-settings")
    page.click("#cs-settings-toggle")
    assert page.is_visible("#cs-settings")
    assert page.get_attribute("#cs-settings-toggle", "aria-expanded") == "true"
    # The panel shows the session's current values once loaded.
    page.wait_for_function("() => document.getElementById('cs-temperature').value !== ''", timeout=TIMEOUT_MS)
    assert float(page.input_value("#cs-temperature")) == 0.0
    page.wait_for_function("() => document.getElementById('cs-settings-status').textContent === ''",
                           timeout=TIMEOUT_MS)

    page.fill("#cs-temperature", "0.5")
    page.click("#cs-settings-save")
    status = page.locator("#cs-settings-status")
    status.filter(has_text="Saved.").wait_for(timeout=TIMEOUT_MS)
    assert "cs-bad" not in (status.get_attribute("class") or "")
    params = _get_json(page, "get_generation_params")
    assert params["success"] is True and params["generation_params"]["temperature"] == 0.5
    assert chat_stream.params["temperature"] == 0.0  # the server default is untouched

    page.fill("#cs-temperature", "5")
    page.click("#cs-settings-save")
    page.wait_for_function(
        "() => document.getElementById('cs-settings-status').classList.contains('cs-bad')", timeout=TIMEOUT_MS)
    assert "Temperature" in status.inner_text()
    assert _get_json(page, "get_generation_params")["generation_params"]["temperature"] == 0.5
    page.screenshot(path=str(artifacts / "web_page_settings.png"))

    page.click("#cs-settings-toggle")
    assert page.is_hidden("#cs-settings")


@pytest.fixture(scope="module")
def busy_server() -> Iterator[tuple[LiveServer, ChatStream]]:
    chat_stream = ChatStream(use_mock_response=True, mock_params={"type": "long", "time_per_token_sec": 0.05},
                             chat_prompt_clazz=ChatPromptTogetherRedPajamaINCITEChat,
                             num_of_concurrent_executions=1, max_queue_size=0)
    with LiveServer(_app(chat_stream)) as server:
        yield server, chat_stream


def test_a_full_server_shows_the_busy_message(busy_server, page_on, artifacts: Path) -> None:
    server, chat_stream = busy_server
    page = page_on(server.url)
    with session_client(server.url) as client:
        with client.stream("POST", "/chat_stream", json={"user_input": "Tell me a long story."}) as held:
            assert held.status_code == 200
            # Keep the iterator referenced: a dropped one is closed, and with it the connection.
            chunks = held.iter_text()
            assert "<::EOS::>" in next(chunks)  # streaming: it holds the only run slot
            assert chat_stream.admission.num_running == 1
            _send(page, "Hello?")
            error = page.locator("#cs-messages > .cs-error")
            error.wait_for(timeout=TIMEOUT_MS)
            assert "The server is busy" in error.inner_text()
            _wait_idle(page)
            assert page.locator("#cs-messages > .cs-user").count() == 1
            assert page.locator("#cs-messages > .cs-assistant").count() == 1  # only the welcome, no empty bubble
            assert page.is_enabled("#cs-send") and page.is_hidden("#cs-stop")
            page.screenshot(path=str(artifacts / "web_page_busy.png"))
            assert chat_stream.admission.num_running == 1  # the held reply was streaming all along
            next(chunks)
    _wait_for(lambda: chat_stream.admission.num_running == 0)

    # Once the slot is free, the same page can chat again.
    _send(page, "Hello again?")
    page.wait_for_function(
        """() => {
            const b = document.querySelector('#cs-messages > .cs-assistant:last-child .cs-text');
            return b !== null && b.textContent.length >= 20;
        }""", timeout=TIMEOUT_MS)
    page.click("#cs-stop")
    _wait_idle(page)
    assert page.locator("#cs-messages > .cs-error").count() == 1
    _wait_for(lambda: chat_stream.admission.num_running == 0)
