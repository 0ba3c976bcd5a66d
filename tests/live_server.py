"""A real uvicorn server on 127.0.0.1 for end-to-end tests, run in a background thread.

`LiveServer(app)` binds a free port itself (so tests never race for a port) and serves until the
`with` block ends. `SessionClient` is an httpx client that keeps the session cookie even though
the server runs on plain HTTP.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import uvicorn


class LiveServer:
    """`server_factory(config)` builds the uvicorn server (default `uvicorn.Server`);
    `config_options` go to `uvicorn.Config` (e.g. `http=` a protocol class)."""

    def __init__(self, app: Any, log_level: str = "warning",
                 server_factory: Callable[[uvicorn.Config], uvicorn.Server] = uvicorn.Server,
                 **config_options: Any) -> None:
        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = server_factory(uvicorn.Config(app, log_level=log_level, lifespan="on", **config_options))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


# A role table that opens every API to every browser. Without one, `get_prompt`, `get_load` and
# `get_resource_usage` answer 403 (the default policy); tests that read them give this.
OPEN_ROLES = {"user": {"apis": {"allow": "all", "auth_method": "nothing", "use_session": True}}}


def session_client(url: str, **kwargs: Any) -> httpx.Client:
    """An httpx client for `url` that acts like one browser: the cookies the server sets (even
    `Secure` ones, which a cookie jar would not send over plain HTTP) go back on every request."""
    jar: dict[str, str] = {}

    def send_cookies(request: httpx.Request) -> None:
        if jar:
            request.headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())

    def keep_cookies(response: httpx.Response) -> None:
        for header in response.headers.get_list("set-cookie"):
            name, _, rest = header.partition("=")
            jar[name.strip()] = rest.split(";", 1)[0]

    return httpx.Client(base_url=url, timeout=kwargs.pop("timeout", 60),
                        event_hooks={"request": [send_cookies], "response": [keep_cookies]}, **kwargs)


def read_chat_stream(response: httpx.Response) -> list[str]:
    """The cumulative replies of a /chat_stream body, one per complete `<::EOS::>` segment."""
    text = "".join(response.iter_text())
    segments = text.split("<::EOS::>")
    assert segments[-1] == "", f"the stream must end with the finish token: {text[-50:]!r}"
    return segments[:-1]
