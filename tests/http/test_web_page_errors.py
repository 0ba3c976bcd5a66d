"""The chat page when things go wrong, in a real Chromium against real servers: a full server
(429 with Retry-After), a connection that breaks before or during a reply, and a model that is
still loading. Each time the page must say what is happening, keep what the user typed, and
offer (or do) the retry.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

import httpx

from chatstream import ChatPromptTogetherRedPajamaINCITEChat
from chatstream.http import app as app_module
from chatstream.http.app import ServerConfig
from live_server import LiveServer, session_client
from web_page_support import (
    LAST_REPLY, artifacts, browser, echo_chat_stream, focused, page_app, page_on, send,  # noqa: F401
    serious_axe_violations, server_prompt, wait_for, wait_idle, wait_synced)

HELD_TEXT = " ".join(["held"] * 3000)


def _statuses(page: Any) -> list[int]:
    seen: list[int] = []
    page.on("response", lambda r: seen.append(r.status) if r.url.endswith("/chat_stream") else None)
    return seen


def test_a_full_server_retries_on_its_own_and_keeps_the_message(page_on, artifacts) -> None:
    chat_stream = echo_chat_stream(num_of_concurrent_executions=1, max_queue_size=0, retry_after_sec=2)
    with LiveServer(page_app(chat_stream)) as server:
        page = page_on(server.url)
        statuses = _statuses(page)
        with session_client(server.url) as client:
            with client.stream("POST", "/chat_stream", json={"user_input": HELD_TEXT}) as held:
                chunks = held.iter_text()  # keep it referenced: a dropped iterator closes the connection
                assert "<::EOS::>" in next(chunks)
                assert chat_stream.admission.num_running == 1
                send(page, "Are you **there**?")
                notice = page.locator("#cs-notice[data-kind='busy']")
                notice.wait_for()
                assert notice.get_attribute("role") == "status"
                # The countdown starts from the server's Retry-After.
                countdown = notice.locator(".cs-notice-text").inner_text()
                assert re.fullmatch(r"The server is busy\. Retrying in [12] s…", countdown)
                assert page.locator("#cs-messages > .cs-user .cs-content").inner_text() == "Are you **there**?"
                assert page.input_value("#cs-input") == ""
                assert page.is_visible("#cs-stop") and page.is_disabled("#cs-send")
                page.screenshot(path=str(artifacts / "web_page_busy.png"))
                assert serious_axe_violations(page) == []
                wait_for(lambda: statuses.count(429) >= 2, page=page)  # it retried on its own, and was refused again
                assert page.locator("#cs-messages > .cs-assistant").count() == 1  # the welcome only
                next(chunks)
        # The held reply ended, so the slot is free: the next automatic retry goes through.
        reply = wait_synced(page)
        assert reply.locator(".cs-content strong").inner_text() == "there"
        assert page.is_hidden("#cs-notice")
        assert statuses[-1] == 200
        assert server_prompt(page).count("<human>: Are you **there**?") == 1  # sent once, however many tries
        assert page.locator("#cs-messages > .cs-user").count() == 1


def test_cancelling_the_wait_puts_the_message_back_in_the_box(page_on) -> None:
    chat_stream = echo_chat_stream(num_of_concurrent_executions=1, max_queue_size=0, retry_after_sec=30)
    with LiveServer(page_app(chat_stream)) as server:
        page = page_on(server.url)
        with session_client(server.url) as client:
            with client.stream("POST", "/chat_stream", json={"user_input": HELD_TEXT}) as held:
                chunks = held.iter_text()
                next(chunks)
                for how in ("cancel", "escape"):
                    send(page, f"Please answer ({how})")
                    page.wait_for_selector("#cs-notice[data-kind='busy']")
                    assert "30 s" in page.inner_text("#cs-notice")
                    if how == "cancel":
                        page.click("#cs-notice-cancel")
                    else:
                        page.keyboard.press("Escape")
                    wait_idle(page)
                    assert page.input_value("#cs-input") == f"Please answer ({how})"
                    assert page.locator("#cs-messages > .cs-user").count() == 0
                    assert page.is_hidden("#cs-notice")
                    assert focused(page) == "cs-input"
                    page.fill("#cs-input", "")
                next(chunks)


def test_a_connection_lost_before_the_reply_offers_retry_with_the_text_kept(page_on) -> None:
    chat_stream = echo_chat_stream()
    with LiveServer(page_app(chat_stream)) as server:
        page = page_on(server.url)
        page.route("**/chat_stream", lambda route: route.abort("connectionreset"))
        send(page, "Is anyone there?")
        notice = page.locator("#cs-notice[data-kind='error']")
        notice.wait_for()
        assert notice.get_attribute("role") == "alert"
        assert notice.locator(".cs-notice-text").inner_text() == "The connection to the server was lost."
        assert page.input_value("#cs-input") == "Is anyone there?"
        assert page.locator("#cs-messages > .cs-user").count() == 0
        assert serious_axe_violations(page) == []
        page.unroute("**/chat_stream")
        page.click("#cs-notice-retry")
        reply = wait_synced(page)
        assert reply.locator(".cs-content").inner_text() == "Is anyone there?"
        assert page.input_value("#cs-input") == ""
        assert focused(page) == "cs-input"


def _stop_before_the_reply(page: Any, text: str, handle: Callable[[Any], None]) -> None:
    """Send `text` with /chat_stream requests given to `handle` (which never answers the page), then
    press Stop while the page waits for the reply's first byte."""
    held: list[Any] = []
    page.route("**/chat_stream", lambda route: (handle(route), held.append(route)))
    send(page, text)
    wait_for(lambda: bool(held), page=page)
    page.click("#cs-stop")
    wait_idle(page)
    page.unroute("**/chat_stream")


def test_a_stop_before_the_reply_began_shows_what_the_server_kept(page_on) -> None:
    """Stop while the page still waits for the reply's first byte. Whether the server took the turn
    in that moment is not in the stream: the page asks the stored conversation. Here the server
    stored the whole turn (the request reached it; its answer never reached the page), so the page
    shows that turn; then a request the server never saw gives the message back to the box."""
    chat_stream = echo_chat_stream()
    with LiveServer(page_app(chat_stream)) as server:
        page = page_on(server.url)

        def server_answers_but_the_page_hears_nothing(route: Any) -> None:
            sent = route.request.all_headers()
            headers = {name: sent[name] for name in ("cookie", "origin", "content-type") if name in sent}
            answer = httpx.post(server.url + "/chat_stream", content=route.request.post_data, headers=headers,
                                timeout=60)
            assert answer.status_code == 200, answer.text

        _stop_before_the_reply(page, "kept by the server", server_answers_but_the_page_hears_nothing)
        assert page.input_value("#cs-input") == ""
        assert page.locator("#cs-messages > .cs-user").count() == 1
        assert page.locator(LAST_REPLY + " .cs-content").inner_text() == "kept by the server"
        assert server_prompt(page).count("<human>: kept by the server") == 1
        assert page.is_hidden("#cs-notice")

        _stop_before_the_reply(page, "never reached the server", lambda route: None)
        assert page.input_value("#cs-input") == "never reached the server"
        assert page.locator("#cs-messages > .cs-user").count() == 1
        assert "never reached the server" not in server_prompt(page)


def test_a_reply_cut_off_midway_says_so_and_retry_asks_for_a_new_one(page_on) -> None:
    chat_stream = echo_chat_stream()
    with LiveServer(page_app(chat_stream)) as server:
        page = page_on(server.url)

        def cut_off(route: Any) -> None:
            response = route.fetch()
            body = response.text()
            # Two complete segments, then half of the third: the connection broke there.
            cut = body.index("<::EOS::>", body.index("<::EOS::>") + 1) + len("<::EOS::>") + 3
            route.fulfill(response=response, body=body[:cut])

        page.route("**/chat_stream", cut_off)
        send(page, "one two three four five six")
        reply = wait_synced(page)
        assert reply.get_attribute("data-state") == "dropped"
        assert reply.locator(".cs-note").inner_text() == "Connection lost"
        # The server finished the reply; the page shows what it kept.
        assert reply.locator(".cs-content").inner_text() == "one two three four five six"
        assert "Retry asks for a new reply" in page.inner_text("#cs-notice")
        page.unroute("**/chat_stream")
        page.click("#cs-notice-retry")
        page.wait_for_function("document.querySelectorAll('#cs-messages > .cs-assistant').length === 2 && "
                               "document.querySelector('#cs-messages > .cs-assistant:last-child')"
                               ".dataset.state === 'done'")
        wait_synced(page)
        assert server_prompt(page).count("<bot>:") == 1  # regenerated: still one reply for the one message


def test_while_the_model_loads_the_page_says_so_and_opens_when_ready(page_on, monkeypatch, artifacts) -> None:
    gate = threading.Event()
    build = app_module.build_chat_stream
    monkeypatch.setattr(app_module, "build_chat_stream", lambda config, *rest: (gate.wait(120), build(config, *rest))[1])
    app = app_module.create_app(ServerConfig(
        chat_prompt=ChatPromptTogetherRedPajamaINCITEChat, web_ui_params={"welcomeMessage": "Ready when you are."},
        chat_stream_options={"use_mock_response": True, "mock_params": {"type": "echo", "time_per_token_sec": 0.01}}))
    with LiveServer(app) as server:
        try:
            page_response = httpx.get(server.url + "/")
            assert page_response.status_code == 200 and page_response.headers["content-type"].startswith("text/html")
            assert httpx.get(server.url + "/chat_stream").status_code in (405, 503)
            page = page_on(server.url, wait=False)
            page.wait_for_function("document.getElementById('cs-loading-detail').textContent.includes('so far')")
            assert page.is_visible("#cs-loading") and "Loading the model" in page.inner_text("#cs-loading")
            assert page.is_disabled("#cs-input") and page.is_disabled("#cs-send")
            assert page.evaluate("document.body.dataset.state") == "loading"
            page.screenshot(path=str(artifacts / "web_page_loading.png"))
            assert serious_axe_violations(page) == []
            gate.set()
            wait_idle(page)
            assert page.is_hidden("#cs-loading") and page.is_enabled("#cs-input")
            assert focused(page) == "cs-input"
            assert page.inner_text(LAST_REPLY + " .cs-content") == "Ready when you are."
            send(page, "Now?")
            assert wait_synced(page).locator(".cs-content").inner_text() == "Now?"
        finally:
            gate.set()
