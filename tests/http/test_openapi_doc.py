"""/openapi.json lists every route of `chatstream serve` (the default APIs and /v1 are plain
Starlette routes, which FastAPI's own generator leaves out), with the bodies they take."""

from __future__ import annotations

import re

import httpx
from starlette.routing import Route

from chatstream.http.app import create_app
from tiny_server import tiny_server


def test_every_route_is_in_the_document():
    app = create_app(model="unused")  # the document needs no model
    document = app.openapi()
    listed = {(path, method.upper()) for path, operations in document["paths"].items() for method in operations}
    for route in app.routes:
        if isinstance(route, Route) and route.include_in_schema and route.path not in ("/openapi.json", "/docs",
                                                                                       "/docs/oauth2-redirect",
                                                                                       "/redoc"):
            path = re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", route.path)
            for method in route.methods - {"HEAD"}:
                assert (path, method) in listed, (path, method)
    assert {"/chat_stream", "/v1/chat/completions", "/v1/completions", "/health", "/metrics"} <= set(document["paths"])
    body = document["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ChatCompletionRequest"}
    assert "messages" in document["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    chat = document["paths"]["/chat_stream"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(chat["properties"]) == {"user_input", "regenerate"}


def test_the_served_document_and_docs_page(tiny_model_factory):
    with tiny_server(tiny_model_factory) as (server, _):
        document = httpx.get(server.url + "/openapi.json").json()
        assert len(document["paths"]) >= 18
        assert httpx.get(server.url + "/docs").status_code == 200
