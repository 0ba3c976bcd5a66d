"""The web page's stored conversations in a real Chromium: each tab of one browser keeps its own
conversation, a reload shows the conversation again, the sidebar lists, switches, renames, exports
and deletes the session's conversations, editing a past message forks the conversation, and each
conversation keeps its own system prompt (checked against the server's /conversations too)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chatstream import ChatStream
from live_server import LiveServer
from web_page_support import (  # noqa: F401
    LAST_REPLY, WELCOME, artifacts, browser, echo_chat_stream, focused, get_json, page_app, page_conversation_id,
    page_on, send, serious_axe_violations, server_prompt, wait_idle, wait_synced)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[LiveServer, ChatStream]]:
    chat_stream = echo_chat_stream(time_per_token_sec=0.005)
    with LiveServer(page_app(chat_stream)) as live:
        yield live, chat_stream


def _tab(first: Any, url: str) -> Any:
    """Another tab of `first`'s browser (same cookies, its own sessionStorage)."""
    page = first.context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.goto(url + "/")
    wait_idle(page)
    return page


def _chat(page: Any, text: str) -> Any:
    send(page, text)
    reply = wait_synced(page)
    wait_idle(page)
    return reply


def _shown(page: Any) -> list[str]:
    """The messages on the page, welcome included, as text."""
    return [text.strip() for text in page.locator("#cs-messages > .cs-msg .cs-content").all_inner_texts()]


def _listed(page: Any) -> list[str]:
    page.wait_for_selector("#cs-conv-list .cs-conv")
    return page.locator("#cs-conv-list .cs-conv-open").all_inner_texts()


def test_two_tabs_keep_two_conversations_and_a_reload_shows_each_again(server, page_on) -> None:
    live, _ = server
    first = page_on(live.url)
    second = _tab(first, live.url)
    _chat(first, "alpha one")
    _chat(second, "beta one")
    _chat(first, "alpha two")
    _chat(second, "beta two")
    assert _shown(first) == [WELCOME, "alpha one", "alpha one", "alpha two", "alpha two"]
    assert _shown(second) == [WELCOME, "beta one", "beta one", "beta two", "beta two"]
    first_id, second_id = page_conversation_id(first), page_conversation_id(second)
    assert first_id and second_id and first_id != second_id
    # The server holds both, whole: the second tab did not touch the first one's conversation.
    assert server_prompt(first) == "<human>: alpha one\n<bot>: alpha one\n<human>: alpha two\n<bot>: alpha two\n"
    assert server_prompt(second) == "<human>: beta one\n<bot>: beta one\n<human>: beta two\n<bot>: beta two\n"
    listed = get_json(first, "conversations")["conversations"]
    assert [item["id"] for item in listed] == [second_id, first_id]  # last updated first
    assert [item["num_messages"] for item in listed] == [4, 4]

    for page, word in ((first, "alpha"), (second, "beta")):
        page.reload()
        wait_idle(page)
        assert _shown(page) == [f"{word} one", f"{word} one", f"{word} two", f"{word} two"]
        # The replies come back finished, with their tools and the server's figures.
        assert page.locator(LAST_REPLY).get_attribute("data-state") == "done"
        assert "tokens" in page.locator(LAST_REPLY + " .cs-stats").inner_text()
        assert page.locator(".cs-conv-open[aria-current='true']").inner_text() == f"{word} one"
        assert not page.is_hidden("#cs-regenerate")
    # The history goes on where it was.
    _chat(first, "alpha three")
    assert server_prompt(first).endswith("<human>: alpha three\n<bot>: alpha three\n")
    assert server_prompt(first).startswith("<human>: alpha one\n")


def test_the_sidebar_switches_renames_and_deletes(server, page_on, artifacts) -> None:
    live, _ = server
    page = page_on(live.url)
    _chat(page, "first topic")
    first_id = page_conversation_id(page)
    page.click("#cs-clear")  # New chat: the first one stays in the list
    page.wait_for_function("() => document.querySelectorAll('#cs-messages > .cs-msg').length === 1")
    assert page_conversation_id(page) is None
    _chat(page, "second topic")
    second_id = page_conversation_id(page)
    assert _listed(page) == ["second topic", "first topic"]
    assert page.get_attribute(f"[data-id='{second_id}'] .cs-conv-open", "aria-current") == "true"
    page.screenshot(path=str(artifacts / "web_page_conversations.png"))
    assert serious_axe_violations(page) == []

    # Switch: the first conversation's history, and the page talks in it from now on.
    page.click(f"[data-id='{first_id}'] .cs-conv-open")
    page.wait_for_function(f"() => location.hash === '#c={first_id}'")
    wait_idle(page)
    assert _shown(page) == ["first topic", "first topic"]
    _chat(page, "more on it")
    assert server_prompt(page).count("<human>:") == 2
    assert _listed(page) == ["first topic", "second topic"]

    # Rename in place: Enter saves, on the server too.
    page.click(f"[data-id='{second_id}'] .cs-conv-rename")
    page.fill(".cs-conv-input", "Renamed topic")
    page.press(".cs-conv-input", "Enter")
    page.wait_for_function("() => [...document.querySelectorAll('.cs-conv-open')].some(b => b.textContent === 'Renamed topic')")
    assert get_json(page, f"conversations/{second_id}")["title"] == "Renamed topic"
    # Escape cancels.
    page.click(f"[data-id='{second_id}'] .cs-conv-rename")
    page.fill(".cs-conv-input", "Not this")
    page.press(".cs-conv-input", "Escape")
    assert get_json(page, f"conversations/{second_id}")["title"] == "Renamed topic"

    # Delete asks first; deleting the conversation on the page starts a new one.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click(f"[data-id='{first_id}'] .cs-conv-delete")
    assert get_json(page, f"conversations/{first_id}")["id"] == first_id
    page.once("dialog", lambda dialog: dialog.accept())
    page.click(f"[data-id='{first_id}'] .cs-conv-delete")
    page.wait_for_function(f"() => !document.querySelector(\"[data-id='{first_id}']\")")
    assert get_json(page, f"conversations/{first_id}")["error"] == "not_found"
    page.wait_for_function("() => location.hash === ''")
    assert _shown(page) == [WELCOME]
    assert _listed(page) == ["Renamed topic"]


def test_a_conversation_that_is_gone_gives_way_to_a_new_one(server, page_on) -> None:
    live, _ = server
    page = page_on(live.url)
    _chat(page, "short lived")
    gone = page_conversation_id(page)
    page.evaluate("(id) => fetch('conversations/' + id, {method: 'DELETE'})", gone)
    page.reload()
    wait_idle(page)
    assert page_conversation_id(page) is None and _shown(page) == [WELCOME]
    _chat(page, "fresh start")
    assert server_prompt(page) == "<human>: fresh start\n<bot>: fresh start\n"


def test_without_the_conversation_routes_the_page_talks_in_the_sessions_conversation(page_on) -> None:
    chat_stream = echo_chat_stream(time_per_token_sec=0.005)
    with LiveServer(page_app(chat_stream, all=False, exclude=["conversations"])) as live:
        page = page_on(live.url)
        assert page.is_hidden("#cs-sidebar") and page.is_hidden("#cs-conversations-toggle")
        _chat(page, "one")
        _chat(page, "two")
        assert page_conversation_id(page) is None
        prompt = get_json(page, "get_prompt")["prompt"]
        assert prompt == "%3Chuman%3E%3A%20one%0A%3Cbot%3E%3A%20one%0A%3Chuman%3E%3A%20two%0A%3Cbot%3E%3A%20two%0A"
        page.reload()  # as the original page did: a reload starts the session's conversation afresh
        wait_idle(page)
        assert _shown(page) == [WELCOME] and get_json(page, "get_prompt")["prompt"] is None


def test_export_downloads_the_conversation_as_json(server, page_on) -> None:
    live, _ = server
    page = page_on(live.url)
    _chat(page, "keep **this**")
    conversation_id = page_conversation_id(page)
    _listed(page)
    link = page.locator(f"[data-id='{conversation_id}'] .cs-conv-export")
    assert link.get_attribute("aria-label") == "Export “keep **this**” as JSON"
    with page.expect_download() as download_info:
        link.click()
    download = download_info.value
    assert download.suggested_filename == f"conversation-{conversation_id}.json"
    exported = json.loads(Path(download.path()).read_text(encoding="utf-8"))
    assert exported == get_json(page, f"conversations/{conversation_id}/export")
    assert exported["format"] == "chatstream.conversation"
    assert [(m["role"], m["text"]) for m in exported["messages"]] == [("user", "keep **this**"),
                                                                       ("assistant", "keep **this**")]


def _edit(page: Any, index: int, text: str) -> None:
    page.locator("#cs-messages > .cs-user").nth(index).locator(".cs-edit").click()
    assert focused(page) == "TEXTAREA.cs-edit-input"
    page.fill(".cs-edit-input", text)
    page.press(".cs-edit-input", "Enter")


def test_editing_a_past_message_forks_the_conversation_and_resends(server, page_on, artifacts) -> None:
    live, _ = server
    page = page_on(live.url)
    for text in ("one", "two", "three"):
        _chat(page, text)
    source_id = page_conversation_id(page)

    # Escape (or Cancel) puts the message back as it was, focus on its Edit button.
    second = page.locator("#cs-messages > .cs-user").nth(1)
    second.locator(".cs-edit").click()
    assert page.input_value(".cs-edit-input") == "two"
    page.fill(".cs-edit-input", "not sent")
    page.screenshot(path=str(artifacts / "web_page_edit.png"))
    assert serious_axe_violations(page) == []
    page.keyboard.press("Escape")
    assert page.locator(".cs-edit-form").count() == 0 and second.locator(".cs-content").inner_text() == "two"
    assert focused(page) == "BUTTON.cs-tool.cs-edit"

    # Enter sends the edit: a new conversation with what came before, then the edited turn.
    _edit(page, 1, "two, edited")
    page.wait_for_function(f"() => location.hash !== '#c={source_id}'")
    wait_synced(page)
    wait_idle(page)
    fork_id = page_conversation_id(page)
    assert fork_id and fork_id != source_id
    assert _shown(page) == ["one", "one", "two, edited", "two, edited"]
    assert server_prompt(page) == "<human>: one\n<bot>: one\n<human>: two, edited\n<bot>: two, edited\n"
    # The original stays whole, and both are listed.
    source = get_json(page, f"conversations/{source_id}")
    assert [m["text"] for m in source["messages"]] == ["one", "one", "two", "two", "three", "three"]
    page.wait_for_function(f"() => document.querySelector(\"[data-id='{fork_id}'] .cs-conv-open\")")
    assert _listed(page)[:2] == ["one (edited)", "one"]
    assert page.get_attribute(f"[data-id='{fork_id}'] .cs-conv-open", "aria-current") == "true"

    # Editing the first message: the fork is named by its new first message; after a reload too.
    _edit(page, 0, "zero")
    page.wait_for_function(f"() => !['', '#c={fork_id}'].includes(location.hash)")
    wait_synced(page)
    wait_idle(page)
    assert server_prompt(page) == "<human>: zero\n<bot>: zero\n"
    page.reload()
    wait_idle(page)
    assert _shown(page) == ["zero", "zero"]
    assert page.inner_text(LAST_REPLY + " .cs-stats").startswith("1 token · first token ")
    assert _listed(page)[0] == "zero"
    assert len(get_json(page, "conversations")["conversations"]) >= 3


def _set_system_prompt(page: Any, text: str | None) -> str:
    """Open the settings, read the system prompt shown, set `text` (None: leave it), close."""
    page.click("#cs-settings-toggle")
    page.wait_for_function("document.getElementById('cs-settings-status').textContent === ''")
    shown = page.input_value("#cs-system-prompt")
    if text is not None:
        page.fill("#cs-system-prompt", text)
        page.click("#cs-settings-save")
        page.wait_for_function("document.getElementById('cs-settings-status').textContent === 'Saved'")
    page.keyboard.press("Escape")
    return shown


def test_each_conversation_keeps_its_own_system_prompt(server, page_on) -> None:
    live, _ = server
    page = page_on(live.url)
    _chat(page, "first")
    first_id = page_conversation_id(page)
    _set_system_prompt(page, "Answer briefly.")
    assert get_json(page, f"conversations/{first_id}")["system"] == "Answer briefly."
    page.click("#cs-clear")
    wait_idle(page)
    # A new conversation starts with the last system prompt; changing it there leaves the first alone.
    assert _set_system_prompt(page, "Answer at length.") == "Answer briefly."
    _chat(page, "second")
    second_id = page_conversation_id(page)
    assert get_json(page, f"conversations/{second_id}")["system"] == "Answer at length."
    assert server_prompt(page).startswith("Answer at length.<human>: second\n")
    page.click(f"[data-id='{first_id}'] .cs-conv-open")
    page.wait_for_function(f"() => location.hash === '#c={first_id}'")
    wait_idle(page)
    assert _set_system_prompt(page, None) == "Answer briefly."
    _chat(page, "again")
    assert server_prompt(page).startswith("Answer briefly.<human>: first\n")
    assert get_json(page, f"conversations/{first_id}")["system"] == "Answer briefly."
