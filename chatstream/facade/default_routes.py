"""One-line app setup: `append_apis` registers the default routes, `append_middlewares` adds
sessions and CORS, and `web_page` serves the bundled chat page (`chatstream.web.page`). Also the
original's names for the routes (`DefaultApiNames`, `to_web_api_path`) and its role middleware.

The original's routes are plain Starlette routes added to `app.router`, so this works for FastAPI
and Starlette apps alike; the conversation routes ("conversations", `conversation_routes.py`) are
FastAPI routes, so they show in `/openapi.json`. Sessions use `SessionCookieMiddleware`: the
cookie carries only a signed session id, the session lives in the ChatStream's conversation store,
and only the routes that need one create it. A user's own fastsession `FastSessionMiddleware`
(the original's quick start) works too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi.routing import APIRouter
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from chatstream.facade.client_roles import API_NAMES, ClientRoles
from chatstream.facade.conversation_handler import CONVERSATION_ID_HEADER
from chatstream.facade.conversation_routes import API_NAME as CONVERSATIONS, conversation_router
from chatstream.facade.request_limits import DEFAULT_BODY_TIMEOUT_SEC, DEFAULT_MAX_REQUEST_BYTES, RequestLimits
from chatstream.facade.session_cookie import SessionCookieMiddleware
from chatstream.facade.sessions import prepare_session
from chatstream.facade.store_handle import StoreHandle
from chatstream.web.page import ASSET_PREFIX, asset_response, index_response, normalize_locale

if TYPE_CHECKING:
    from chatstream.facade.chat_stream import ChatStream
    from chatstream.facade.session_apis import SessionApis

# Which ChatStream serves a request: a server's exists only once its model loaded (None until then).
ChatStreamResolver = Callable[[Request], "ChatStream | None"]
RouteHandler = Callable[["ChatStream", Request], Awaitable[Response]]

_POSTS = ("chat_stream", "clear_context", "set_generation_params", "set_feedback", "set_system_prompt")
_PATHS = {"webui_index": "/", "webui_js": "/chatstream.js"}
# name -> (method, path), for the routes with one path ("conversations" has several)
ROUTES: dict[str, tuple[str, str]] = {
    name: ("POST" if name in _POSTS else "GET", _PATHS.get(name, "/" + name)) for name in API_NAMES
    if name != CONVERSATIONS
}
# The page and its files are served while the model loads too (the page then waits for /health).
_PAGE_NAMES = ("webui_index", "webui_js")
EXPOSED_HEADERS = ["X-ChatStream-API-DevTool-Enabled", "X-ChatStream-Last-Generated-Message-Id",
                   CONVERSATION_ID_HEADER]


def to_web_api_path(api_name: str) -> str:
    """The URL path of a default API ("/" for the page, "/chatstream.js" for its script)."""
    if api_name not in ROUTES:
        raise ValueError(f"Unknown API name:'{api_name}'")
    return ROUTES[api_name][1]


class DefaultApiNames:
    """The original's constants for the default APIs: one per name, `API_NAMES` and `API_METHODS`."""

    CHAT_STREAM = "chat_stream"
    CLEAR_CONTEXT = "clear_context"
    GET_PROMPT = "get_prompt"
    SET_FEEDBACK = "set_feedback"
    SET_GENERATION_PARAMS = "set_generation_params"
    GET_GENERATION_PARAMS = "get_generation_params"
    GET_LOAD = "get_load"
    GET_RESOURCE_USAGE = "get_resource_usage"
    WEBUI_INDEX = "webui_index"
    WEBUI_JS = "webui_js"
    SET_SYSTEM_PROMPT = "set_system_prompt"
    GET_REPLY_STATS = "get_reply_stats"
    CONVERSATIONS = "conversations"
    API_NAMES = list(ROUTES)  # the original's: one path each ("conversations" is ours and has several)
    API_METHODS = {name: method for name, (method, _) in ROUTES.items()}


def _selected(opts: dict[str, Any]) -> list[str]:
    chosen = [key for key in ("include", "exclude", "all") if opts.get(key)]
    if len(chosen) > 1:
        raise ValueError(f"append_apis takes one of 'include', 'exclude' or 'all', got {chosen}")
    names = opts.get("include") or opts.get("exclude") or []
    unknown = sorted(set(names) - set(API_NAMES))
    if unknown:
        raise ValueError(f"unknown API name(s) {unknown}; known: {list(API_NAMES)}")
    if opts.get("all"):
        return list(API_NAMES)
    if opts.get("exclude"):
        return [name for name in API_NAMES if name not in names]
    return list(names)


def append_apis(chat_stream: ChatStream, app: Starlette, opts: dict[str, Any]) -> None:
    """Register the default routes chosen by `opts` ("include" / "exclude" / "all"). On a FastAPI
    app they are API routes, listed in its /openapi.json like the app's own.

    Other opts: `web_ui_params` (the page's options), `locale` ("en" / "ja": the page's language;
    default: the browser's), `set_feedback_opts` ({"on_feedback_received": fn})."""
    register_routes(app, _selected(opts), lambda request: chat_stream, opts)


def register_routes(app: Starlette, names: list[str], resolve: ChatStreamResolver, opts: dict[str, Any]) -> None:
    """Add the routes `names`, each calling the ChatStream that `resolve(request)` returns.

    A server resolves per request, because its ChatStream exists only once the model loaded;
    `resolve` returns None until then and the route answers 503, except the page, which then
    shows that the model is loading. Choosing "webui_js" also serves the page's modules and
    vendored libraries under /webui/.
    """
    ui_params = opts.get("web_ui_params")
    locale = normalize_locale(opts.get("locale"))
    handlers: dict[str, RouteHandler] = {
        "chat_stream": lambda cs, r: cs.handle_chat_stream_request(r),
        "clear_context": lambda cs, r: cs.handle_clear_context_request(r),
        "get_prompt": lambda cs, r: cs.handle_get_prompt_request(r),
        "set_generation_params": lambda cs, r: cs.handle_set_generation_params_request(r),
        "get_generation_params": lambda cs, r: cs.handle_get_generation_params_request(r),
        "set_feedback": lambda cs, r: cs.handle_set_feedback_request(r, opts.get("set_feedback_opts")),
        "get_load": lambda cs, r: cs.handle_get_load_request(r),
        "get_resource_usage": lambda cs, r: cs.handle_get_resource_usage_request(r),
        "set_system_prompt": lambda cs, r: cs.handle_set_system_prompt_request(r),
        "get_reply_stats": lambda cs, r: cs.handle_get_reply_stats_request(r),
        "webui_index": lambda cs, r: cs.index(r, None, {"ui_init_params": ui_params, "locale": locale}),
        "webui_js": lambda cs, r: cs.js(r),
    }
    if CONVERSATIONS in names:
        router = conversation_router(resolve)
        include = getattr(app, "include_router", None)
        if include is not None:  # FastAPI: the routes show in /openapi.json
            include(router)
        else:
            app.router.routes.extend(router.routes)
    routes = [(name, *ROUTES[name]) for name in names if name != CONVERSATIONS]
    if "webui_js" in names:
        routes.append(("webui_js", "GET", ASSET_PREFIX + "{path:path}"))
    for name, method, path in routes:

        def make_endpoint(name: str, handler: RouteHandler) -> Callable[[Request], Awaitable[Response]]:
            # Only `request` in the signature: FastAPI reads nothing else from the request for us.
            async def endpoint(request: Request) -> Response:
                chat_stream = resolve(request)
                if chat_stream is None:
                    if name in _PAGE_NAMES:  # no role check yet: the page holds no data, the APIs stay guarded
                        return web_page(None, request, name, ui_params, locale)
                    return JSONResponse({"error": "engine_unavailable", "detail": "the model is still loading"},
                                        status_code=503)
                if name in _PAGE_NAMES and chat_stream.client_roles.enabled:
                    await prepare_session(request)  # the browser's role is kept in its stored session
                if "path" in request.path_params:
                    return web_page(chat_stream, request, name, None)
                return await handler(chat_stream, request)

            endpoint.__name__ = name
            return endpoint

        endpoint = make_endpoint(name, handlers[name])
        route_name = name if "{" not in path else name + "_files"
        if isinstance(app.router, APIRouter):
            app.router.add_api_route(path, endpoint, methods=[method], name=route_name,
                                     include_in_schema="{" not in path, response_class=Response)
        else:
            app.router.add_route(path, endpoint, methods=[method], name=route_name)


def append_middlewares(chat_stream: ChatStream, app: Starlette, opts: dict[str, Any] | None) -> None:
    """Add the session middleware, the request limits and, when `opts["cors"]` is given, CORS.

    opts: `fast_session` (the original's key): {secret_key (default: random per process, so
    sessions end with the process; give one to keep them), secure (default False: plain-HTTP
    development works), same_site ("lax"), max_age (seconds; default 14 days, 0: until the
    browser closes)}; the sessions live in the ChatStream's conversation store (a fastsession
    `store` given here is not used). `cors`: {allow_origins} ("*" allows every origin, but then
    without credentials); `max_request_bytes` (default 4 MiB: a larger body is a 413) and
    `body_timeout` (seconds, default 30: a body that takes longer is a 408), see
    `chatstream.facade.request_limits`.
    """
    opts = opts or {}
    add_session_middleware(app, chat_stream.conversations, opts.get("fast_session"), chat_stream.logger)
    cors = opts.get("cors")
    if cors is not None:
        origins = list(cors.get("allow_origins") or ["*"])
        if "*" in origins:
            chat_stream.logger.warning("CORS allows every origin (without credentials): name concrete origins "
                                       "outside development")
        add_cors_middleware(app, origins)
    add_request_limits(app, opts.get("max_request_bytes"), opts.get("body_timeout"))


def add_request_limits(app: Starlette, max_request_bytes: int | None = None, body_timeout: float | None = None) -> None:
    """Bound every request body's size and arrival time; added last, so it is the outermost layer."""
    app.add_middleware(RequestLimits, max_request_bytes=max_request_bytes or DEFAULT_MAX_REQUEST_BYTES,
                       body_timeout=body_timeout or DEFAULT_BODY_TIMEOUT_SEC)


def add_session_middleware(app: Starlette, stores: StoreHandle, options: dict[str, Any] | None = None,
                           logger: logging.Logger | None = None) -> None:
    """Sessions in `stores` (a `StoreHandle`), named by a signed cookie (`SessionCookieMiddleware`)."""
    session = dict(options or {})
    if session.get("store") is not None and logger is not None:
        logger.warning("append_middlewares: sessions are kept in the conversation store; the given store is not used")
    cookie: dict[str, Any] = {"secure": bool(session.get("secure", False)), "same_site": session.get("same_site", "lax")}
    if session.get("max_age") is not None:
        cookie["max_age"] = int(session["max_age"])
    app.add_middleware(SessionCookieMiddleware, stores=stores, secret_key=session.get("secret_key"), **cookie)


def add_cors_middleware(app: Starlette, origins: list[str]) -> None:
    """CORS for `origins`. With "*" every origin may call, but never with credentials (cookies):
    Starlette would otherwise echo any origin back with `Allow-Credentials: true`, letting every
    web page use a visitor's session."""
    app.add_middleware(CORSMiddleware, allow_origins=origins, allow_credentials="*" not in origins,
                       allow_methods=["*"], allow_headers=["*"], expose_headers=EXPOSED_HEADERS)


def web_page(chat_stream: SessionApis | None, request: Request, api_name: str,
             ui_init_params: dict[str, Any] | None, locale: str | None = None) -> Response:
    """The bundled chat page (`/`), its entry module (`/chatstream.js`) or another of its files
    (`/webui/PATH`); `chat_stream` None: the model is still loading."""
    if chat_stream is not None:
        denied = chat_stream.verify_role_for_api(request, api_name)
        if denied is not None:
            return denied
    if api_name == "webui_index":
        if locale is None and chat_stream is not None:
            try:  # the constructor's `locale` (the original's option) when the routes name none
                locale = normalize_locale(getattr(chat_stream, "locale", None))
            except ValueError:
                locale = None
        return index_response(ui_init_params, locale, loading=chat_stream is None)
    return asset_response(request.path_params.get("path", "chatstream.js"))


class DefaultClientRoleGrantMiddleware:
    """Gives each new browser session its default role, as the original's middleware of this name
    did (`app.add_middleware(DefaultClientRoleGrantMiddleware, chat_stream=chat_stream)`, inside the
    session middleware). Not needed here: every role check finds (and stores) the role itself;
    kept so apps written for the original start unchanged."""

    def __init__(self, app: ASGIApp, chat_stream: Any = None) -> None:
        self.app = app
        self.roles: ClientRoles | None = getattr(chat_stream, "client_roles", None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.roles is not None and self.roles.enabled:
            request = Request(scope)
            await prepare_session(request)  # the role is kept in the stored session: read it first
            self.roles.role_for(request)
        await self.app(scope, receive, send)
