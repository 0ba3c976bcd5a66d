"""The chat page's views in a real Chromium: the settings panel, English and Japanese, the phone
layout, dark mode, and an axe-core accessibility check of each (no serious or critical
findings, colour contrast included). Each view is also saved as a screenshot under
test-artifacts/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chatstream import ChatStream
from live_server import LiveServer
from web_page_support import (
    DESKTOP, PHONE, artifacts, browser, echo_chat_stream, focused, get_json, page_app, page_on, send,  # noqa: F401
    TIMEOUT_MS, serious_axe_violations, server_prompt, wait_idle, wait_synced)

CONVERSATION = ("Here is a **plan**:\n\n1. Read the `README`\n2. Run the tests\n\n"
                "```bash\npython -m pytest -q\n```\n\n| step | time |\n|---|---|\n| read | 5 min |")
SERVER_PARAMS = {"temperature": 0.3, "max_new_tokens": 200, "top_p": 0.9, "presence_penalty": 0.5}
SHOWN = {"temperature": "0.3", "top-p-value": "0.9", "top-k-value": "0", "max-new-tokens": "200",
         "repetition-penalty": "1", "frequency-penalty": "0", "presence-penalty": "0.5"}


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with LiveServer(page_app(echo_chat_stream(**SERVER_PARAMS))) as live:
        yield live


@pytest.fixture(scope="module")
def japanese_server() -> Iterator[LiveServer]:
    # Slow enough that a long reply is still streaming when the test stops it.
    with LiveServer(page_app(echo_chat_stream(time_per_token_sec=0.05), locale="ja")) as live:
        yield live


def _chat(page: Any, text: str = CONVERSATION) -> Any:
    send(page, text)
    reply = wait_synced(page)
    reply.locator(".cs-like").click()
    reply.locator(".cs-like[aria-pressed='true']").wait_for()
    return reply


def _check(page: Any, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"web_page_{name}.png"))
    assert serious_axe_violations(page) == [], name


def _open_settings(page: Any) -> None:
    page.click("#cs-settings-toggle")
    page.wait_for_function("document.getElementById('cs-param-temperature').value !== ''")
    page.wait_for_function("document.getElementById('cs-settings-status').textContent === ''")


def test_settings_show_every_value_explain_it_and_validate_it(server: LiveServer, page_on, artifacts) -> None:
    page = page_on(server.url)
    _open_settings(page)
    assert page.get_attribute("#cs-settings-toggle", "aria-expanded") == "true"
    assert focused(page) == "cs-system-prompt"
    for name, value in SHOWN.items():
        assert page.input_value(f"#cs-param-{name}") == value, name
        help_id = page.get_attribute(f"#cs-param-{name}", "aria-describedby").split()[0]
        help_text = page.inner_text(f"#{help_id}")
        assert len(help_text) > 40 and (" from " in help_text or " above " in help_text), (name, help_text)
    assert "A number from 0 to 2." in page.inner_text("#cs-param-temperature-help")
    assert "An integer from 1 to 32768." in page.inner_text("#cs-param-max-new-tokens-help")
    _check(page, artifacts, "settings")

    # Out of range: the field says so at once, and Save sends nothing.
    page.fill("#cs-param-temperature", "5")
    assert page.get_attribute("#cs-param-temperature", "aria-invalid") == "true"
    assert page.inner_text("#cs-param-temperature-error") == "A number from 0 to 2"
    page.fill("#cs-param-top-k-value", "2.5")
    page.click("#cs-settings-save")
    assert page.inner_text("#cs-settings-status") == "Fix the highlighted values first"
    assert focused(page) == "cs-param-temperature"
    assert get_json(page, "get_generation_params")["generation_params"]["temperature"] == 0.3
    page.screenshot(path=str(artifacts / "web_page_settings_invalid.png"))

    page.fill("#cs-param-temperature", "0.5")
    page.fill("#cs-param-top-k-value", "40")
    page.fill("#cs-system-prompt", "You answer like a pirate.")
    page.click("#cs-settings-save")
    page.wait_for_function("document.getElementById('cs-settings-status').textContent === 'Saved'")
    params = get_json(page, "get_generation_params")["generation_params"]
    assert params["temperature"] == 0.5 and params["top_k_value"] == 40 and params["max_new_tokens"] == 200
    assert page.get_attribute("#cs-param-temperature", "aria-invalid") is None
    assert server_prompt(page) is None  # a new conversation is stored with its first message

    page.keyboard.press("Escape")
    assert page.is_hidden("#cs-settings") and focused(page) == "cs-settings-toggle"
    # The system prompt is remembered: after a reload the new conversation starts with it.
    page.reload()
    wait_idle(page)
    _open_settings(page)
    assert page.input_value("#cs-system-prompt") == "You answer like a pirate."
    page.keyboard.press("Escape")
    send(page, "Ahoy")
    wait_synced(page)
    assert server_prompt(page) == "You answer like a pirate.<human>: Ahoy\n<bot>: Ahoy\n"


def test_desktop_and_dark_mode_views_pass_axe(server: LiveServer, page_on, artifacts) -> None:
    page = page_on(server.url, viewport=DESKTOP)
    _check(page, artifacts, "desktop_empty")
    _chat(page)
    _check(page, artifacts, "desktop")

    dark = page_on(server.url, viewport=DESKTOP, color_scheme="dark")
    assert dark.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(20, 22, 28)"
    _chat(dark)
    _check(dark, artifacts, "dark")
    _open_settings(dark)
    _check(dark, artifacts, "dark_settings")


def test_phone_layout_keeps_the_header_on_one_line(server: LiveServer, page_on, artifacts) -> None:
    page = page_on(server.url, viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    header = page.evaluate("""() => {
        const box = (el) => el.getBoundingClientRect();
        const title = document.getElementById('cs-title');
        const buttons = [...document.querySelectorAll('.cs-header button')].map(box);
        return {height: box(document.querySelector('.cs-header')).height,
                titleHeight: box(title).height, lineHeight: parseFloat(getComputedStyle(title).lineHeight),
                tops: [box(title).top, ...buttons.map((b) => b.top)], bottoms: buttons.map((b) => b.bottom),
                width: document.documentElement.scrollWidth};
    }""")
    assert header["titleHeight"] < 1.5 * header["lineHeight"], header  # one line
    assert header["height"] <= 60, header  # under 8% of the screen
    assert max(header["bottoms"]) <= header["height"], header  # the buttons sit in the header row
    assert header["width"] <= PHONE["width"], header  # nothing scrolls sideways
    # The icon-only buttons keep their names.
    assert page.get_by_role("button", name="Settings").is_visible()
    assert page.get_by_role("button", name="New chat").is_visible()
    _chat(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    _check(page, artifacts, "phone")
    dark = page_on(server.url, viewport=PHONE, is_mobile=True, has_touch=True, color_scheme="dark")
    _chat(dark)
    _check(dark, artifacts, "phone_dark")


def test_japanese_under_the_ja_locale(japanese_server: LiveServer, page_on, artifacts) -> None:
    page = page_on(japanese_server.url, locale="en-US")  # the server's choice wins over the browser's
    assert page.evaluate("document.documentElement.lang") == "ja"
    assert page.get_attribute("#cs-input", "placeholder") == "メッセージを入力"
    assert page.inner_text("#cs-hint") == "Enter で送信 · Shift+Enter で改行 · Esc で停止"
    assert page.get_by_role("button", name="設定").is_visible()
    assert page.get_by_role("button", name="新しい会話").is_visible()
    assert page.get_by_role("button", name="送信").is_visible()
    send(page, " ".join(["長い返答です。"] * 60))
    page.wait_for_selector("#cs-stop:not([hidden])")
    assert page.inner_text("#cs-stop") == "停止"
    # Stop once the reply streams (the server has accepted the turn): a stop before that takes the turn back.
    page.wait_for_function("""() => {
        const r = document.querySelector('#cs-messages > .cs-assistant:last-child[data-streaming="true"]');
        return r !== null && r.querySelector('.cs-content').textContent.length >= 14;
    }""", timeout=TIMEOUT_MS)
    page.keyboard.press("Escape")
    reply = wait_synced(page)
    assert reply.locator(".cs-note").inner_text() == "停止しました"
    assert "トークン" in reply.locator(".cs-stats").inner_text()
    assert reply.locator(".cs-copy-reply").get_attribute("aria-label") == "返答をコピー"
    assert page.locator("#cs-messages > .cs-user .cs-edit").get_attribute("aria-label") == "編集して再送信"
    _chat(page, "日本語の**太字**と`コード`です。")
    _check(page, artifacts, "japanese")
    _open_settings(page)
    assert page.inner_text("label[for='cs-system-prompt']") == "システムプロンプト"
    assert "0 から 2 までの数値" in page.inner_text("#cs-param-temperature-help")
    _check(page, artifacts, "japanese_settings")


@pytest.mark.parametrize(("browser_locale", "placeholder"), [("ja-JP", "メッセージを入力"), ("en-US", "Type a message"),
                                                              ("fr-FR", "Type a message")])
def test_without_a_server_locale_the_browser_language_decides(server: LiveServer, page_on, browser_locale: str,
                                                              placeholder: str) -> None:
    page = page_on(server.url, locale=browser_locale)
    assert page.get_attribute("#cs-input", "placeholder") == placeholder


def test_the_constructor_locale_is_the_pages_default(page_on) -> None:
    chat_stream: ChatStream = echo_chat_stream(locale="ja_JP")
    with LiveServer(page_app(chat_stream)) as live:
        page = page_on(live.url, locale="en-US")
        assert page.get_attribute("#cs-input", "placeholder") == "メッセージを入力"
