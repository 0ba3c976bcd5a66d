"""What the web page's browser tests share: a headless Chromium, apps that serve the page, a page
opener, the axe-core check and screenshots.

The browser is Debian's Chromium (`CHROMIUM` or `chromium` on PATH) driven by the `playwright`
package; no browser is downloaded. axe-core is vendored for the tests under `tests/http/vendor/`.
Screenshots go to $CHATSTREAM_TEST_ARTIFACTS (default `test-artifacts/`).
"""

from __future__ import annotations

import os
import shutil
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from chatstream import ChatPromptTogetherRedPajamaINCITEChat, ChatStream
from live_server import OPEN_ROLES

TIMEOUT_MS = 60_000
WELCOME = "Hello! Ask me anything."
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
AXE_JS = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"

LAST_REPLY = "#cs-messages > .cs-assistant:last-child"
IS_IDLE = "() => document.body.dataset.state === 'idle'"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


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


def page_app(chat_stream: ChatStream, **opts: Any) -> FastAPI:
    """An app with the one-line setup, as the original's users write it."""
    app = FastAPI()
    chat_stream.append_middlewares(app)
    chat_stream.append_apis(app, {"all": True, "web_ui_params": {"welcomeMessage": WELCOME, "title": "Web page test"},
                                  **opts})
    return app


def echo_chat_stream(time_per_token_sec: float = 0.01, **options: Any) -> ChatStream:
    """The generator mock that streams the user's own text back, a word at a time (every API open,
    so a test may read the prompt)."""
    options.setdefault("client_roles", OPEN_ROLES)
    return ChatStream(use_mock_response=True, mock_params={"type": "echo", "time_per_token_sec": time_per_token_sec},
                      chat_prompt_clazz=ChatPromptTogetherRedPajamaINCITEChat, **options)


@pytest.fixture
def page_on(browser: Any, artifacts: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """`page_on(url, wait=True, **context_options)`: a fresh browser context (so a fresh session)
    with the page loaded; with `wait`, returns once the page is ready for a message."""
    contexts = []

    def open_page(url: str, wait: bool = True, **context_options: Any) -> Any:
        context_options.setdefault("viewport", DESKTOP)
        context = browser.new_context(**context_options)
        context.set_default_timeout(TIMEOUT_MS)
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
        contexts.append(context)
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        page.goto(url + "/")
        if wait:
            wait_idle(page)
        return page

    yield open_page
    for index, context in enumerate(contexts):
        for number, page in enumerate(context.pages):
            try:
                page.screenshot(path=str(artifacts / f"web_page_{request.node.name}_{index}_{number}_end.png"))
            except Exception:  # noqa: BLE001 - a screenshot must not hide the test's own result
                pass
            assert not getattr(page, "errors", []), f"the page raised: {page.errors}"
        context.close()


def wait_idle(page: Any) -> None:
    page.wait_for_function(IS_IDLE, timeout=TIMEOUT_MS)


def send(page: Any, text: str) -> None:
    page.fill("#cs-input", text)
    page.press("#cs-input", "Enter")


def wait_synced(page: Any) -> Any:
    """The last reply, once the page has the server's text and statistics for it."""
    page.wait_for_selector(LAST_REPLY + "[data-synced='true']", timeout=TIMEOUT_MS)
    return page.locator(LAST_REPLY)


def get_json(page: Any, endpoint: str) -> dict[str, Any]:
    """GET an API through the page, so with the page's own session cookie."""
    return page.evaluate("(e) => fetch(e, {cache: 'no-store'}).then((r) => r.json())", endpoint)


def page_conversation_id(page: Any) -> str | None:
    """The stored conversation the page is on (its URL fragment says), None for a new one."""
    return page.evaluate("() => new URLSearchParams(location.hash.slice(1)).get('c')")


def server_prompt(page: Any) -> str | None:
    """The prompt the server renders for the page's conversation (None: the page has none yet)."""
    conversation_id = page_conversation_id(page)
    if conversation_id is None:
        return None
    prompt = get_json(page, f"get_prompt?conversation_id={conversation_id}")["prompt"]
    return None if prompt is None else urllib.parse.unquote(prompt)


def clipboard(page: Any) -> str:
    return page.evaluate("navigator.clipboard.readText()")


def focused(page: Any) -> str:
    """What has focus: its id, or its tag and classes; "BODY" when focus fell to the page."""
    return page.evaluate("""() => {
        const el = document.activeElement;
        if (!el || el === document.body) return 'BODY';
        return el.id || (el.tagName + '.' + [...el.classList].join('.'));
    }""")


def serious_axe_violations(page: Any) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now (WCAG 2.x A and AA)."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE_JS))
    results = page.evaluate("""() => axe.run(document, {
        runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']},
        resultTypes: ['violations']})""")
    return [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
            for v in results["violations"] if v["impact"] in ("serious", "critical")]


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0, page: Any = None) -> None:
    """Poll `predicate`; pass the `page` whose events it reads (Playwright delivers them only while
    it is called)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        if page is not None:
            page.wait_for_timeout(20)
        else:
            time.sleep(0.02)
