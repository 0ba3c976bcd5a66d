"""One key guards every route that generates, changes settings or shows data; /health stays open.
Programs send `Authorization: Bearer KEY`; a browser logs in once through the login form and then
carries an HttpOnly, SameSite=Strict cookie. Cross-site posts and text/plain bodies are refused,
and CORS with "*" never allows credentials."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from chatstream.http.auth import AUTH_COOKIE
from tiny_server import tiny_server
from web_page_support import artifacts, browser, page_on, send, wait_idle, wait_synced  # noqa: F401 - fixtures

KEY = "sk-the-one-key"
GUARDED = [("POST", "/chat_stream", {"user_input": "Hello"}), ("POST", "/clear_context", {}),
           ("POST", "/set_generation_params", {"temperature": 0.5}), ("GET", "/get_generation_params", None),
           ("POST", "/set_system_prompt", {"system_prompt": "Be brief."}), ("GET", "/get_prompt", None),
           ("GET", "/get_load", None), ("GET", "/get_resource_usage", None), ("GET", "/get_reply_stats", None),
           ("POST", "/set_feedback", {"message_id": "x", "is_like": True}),
           ("POST", "/v1/completions", {"prompt": "Hello", "max_tokens": 2}), ("GET", "/v1/models", None),
           ("GET", "/metrics", None), ("GET", "/docs", None), ("GET", "/openapi.json", None),
           ("GET", "/", None), ("GET", "/chatstream.js", None), ("GET", "/webui/api.js", None)]


@pytest.fixture(scope="module")
def server(tiny_model_factory):
    with tiny_server(tiny_model_factory, api_key=KEY, cors_origins=("http://allowed.example",)) as (server, _):
        yield server


def _call(url: str, method: str, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, url + path, json=body, timeout=30, **kwargs)


@pytest.mark.parametrize("method, path, body", GUARDED)
def test_every_route_but_health_needs_the_key(server, method, path, body):
    response = _call(server.url, method, path, body)
    assert response.status_code == 401, (path, response.status_code)
    assert response.headers["www-authenticate"] == "Bearer"
    wrong = _call(server.url, method, path, body, headers={"Authorization": "Bearer sk-wrong"})
    assert wrong.status_code == 401
    right = _call(server.url, method, path, body, headers={"Authorization": f"Bearer {KEY}"})
    assert right.status_code < 500 and right.status_code != 401, (path, right.status_code, right.text[:200])


def test_health_is_open(server):
    response = httpx.get(server.url + "/health")
    assert response.status_code == 200 and response.json()["status"] == "ready"


def test_openai_clients_use_the_key_and_see_openai_errors(server):
    with openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0) as client:
        assert client.completions.create(model="tiny", prompt="Hello", max_tokens=2).choices
    with openai.OpenAI(base_url=server.url + "/v1", api_key="sk-wrong", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError) as err:
            client.models.list()
    assert err.value.code == "invalid_api_key"


def test_the_login_form_sets_an_http_only_strict_cookie(server):
    page = httpx.get(server.url + "/", headers={"Accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/"
    form = httpx.get(server.url + "/login?next=/")
    assert form.status_code == 200 and 'name="api_key"' in form.text
    wrong = httpx.post(server.url + "/login", data={"api_key": "nope", "next": "/"})
    assert wrong.status_code == 401 and AUTH_COOKIE not in wrong.headers.get("set-cookie", "")
    right = httpx.post(server.url + "/login", data={"api_key": KEY, "next": "//evil.example/"})
    assert right.status_code == 303 and right.headers["location"] == "/"  # never off this server
    cookie = right.headers["set-cookie"]
    assert cookie.startswith(AUTH_COOKIE + "=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    value = cookie.split(";", 1)[0].split("=", 1)[1]
    cookies = {AUTH_COOKIE: value}
    assert httpx.get(server.url + "/get_generation_params", cookies=cookies).status_code == 200
    response = httpx.post(server.url + "/chat_stream", json={"user_input": "Hi"}, cookies=cookies, timeout=30)
    assert response.status_code == 200 and response.text.endswith("<::EOS::>")
    forged = {AUTH_COOKIE: value[:-2] + ("AA" if not value.endswith("AA") else "BB")}
    assert httpx.get(server.url + "/get_load", cookies=forged).status_code == 401
    # Logged in, but posted from another site's page: refused.
    cross = httpx.post(server.url + "/chat_stream", json={"user_input": "Hi"}, cookies=cookies,
                       headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403 and cross.json()["error"] == "forbidden_origin"
    out = httpx.post(server.url + "/logout", cookies=cookies)
    assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]


def test_cross_site_posts_and_text_plain_bodies_are_refused(server):
    auth = {"Authorization": f"Bearer {KEY}"}
    plain = httpx.post(server.url + "/v1/completions", content='{"prompt": "Hi", "max_tokens": 2}',
                       headers={**auth, "Content-Type": "text/plain"})
    assert plain.status_code == 415 and plain.json()["error"] == "unsupported_media_type"
    form = httpx.post(server.url + "/chat_stream", content="user_input=Hi",
                      headers={**auth, "Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415
    for origin in ("http://evil.example", "null"):
        refused = httpx.post(server.url + "/v1/completions", json={"prompt": "Hi", "max_tokens": 2},
                             headers={**auth, "Origin": origin})
        assert refused.status_code == 403, origin
    marked = httpx.post(server.url + "/clear_context", json={}, headers={**auth, "Sec-Fetch-Site": "cross-site"})
    assert marked.status_code == 403
    for origin in (server.url, "http://allowed.example"):
        allowed = httpx.post(server.url + "/v1/completions", json={"prompt": "Hi", "max_tokens": 2},
                             headers={**auth, "Origin": origin})
        assert allowed.status_code == 200, origin


def test_cors_star_never_allows_credentials(tiny_model_factory):
    with tiny_server(tiny_model_factory, cors_origins=("*",)) as (server, _):
        response = httpx.options(server.url + "/chat_stream", headers={
            "Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        assert response.headers.get("access-control-allow-origin") == "*"
        assert response.headers.get("access-control-allow-credentials") is None
        simple = httpx.get(server.url + "/get_load", headers={"Origin": "http://evil.example"})
        assert simple.headers.get("access-control-allow-credentials") is None


def test_the_page_logs_in_through_the_form_and_chats(server, page_on):  # noqa: F811
    page = page_on(server.url, wait=False)
    page.wait_for_url("**/login?next=/")
    page.fill("#api_key", "not the key")
    page.press("#api_key", "Enter")
    page.wait_for_selector("text=That key is not right.")
    page.fill("#api_key", KEY)
    page.press("#api_key", "Enter")
    page.wait_for_url(server.url + "/")
    wait_idle(page)
    send(page, "Hello there")
    reply = wait_synced(page)
    assert reply.get_attribute("data-message-id")
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies[AUTH_COOKIE]["httpOnly"] and cookies[AUTH_COOKIE]["sameSite"] == "Strict"
    assert page.evaluate("document.cookie").find(AUTH_COOKIE) == -1  # the page's scripts cannot read it
    # A cookie that stops being valid (the key changed, it expired) sends the page back to the form.
    page.context.clear_cookies()
    send(page, "Are you still there?")
    # Polled, not wait_for_url: two refused requests may each start the navigation, and the second
    # one aborting the first is not a failure.
    page.wait_for_function("location.pathname === '/login' && location.search === '?next=%2F'")


def test_a_loopback_server_answers_only_loopback_host_names(tiny_model_factory):
    from chatstream.http.serve import allowed_hosts

    assert allowed_hosts("127.0.0.1", None) == ("localhost", "127.0.0.1", "::1", "[::1]")
    assert allowed_hosts("0.0.0.0", None) == () and allowed_hosts("0.0.0.0", ["chat.example"]) == ("chat.example",)
    with tiny_server(tiny_model_factory, allowed_hosts=allowed_hosts("127.0.0.1", None)) as (server, _):
        assert httpx.get(server.url + "/health").status_code == 200
        rebound = httpx.get(server.url + "/get_load", headers={"Host": f"evil.example:{server.port}"})
        assert rebound.status_code == 400  # a page whose name resolves to 127.0.0.1 cannot read this server
