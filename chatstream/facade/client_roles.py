"""Client roles: who may call which ChatStream API.

This module owns access control for the default APIs: the list of default API names, the
validated role table (`ClientRoles`), how a request's role is found, the 403 answer for a
denied call, and pass-phrase promotion typed into the chat box.

Two kinds of client exist:

* a **browser** has a server-side session (`request.state.session`, a fastsession
  `FastSession`). Its role name lives in the session dict under `SESSION_ROLE_KEY`; a new
  session gets the browser default role, and typing a role's UI pass phrase promotes it.
* an **agent** skipped the session middleware (header `X-FastSession-Skip: skip`). Its role
  is decided per request: a role whose header phrase matches `X-ChatStream-Auth-Header`,
  else the agent default role, else none (denied).

`client_roles=None` is the default policy: every API is open to everyone except
`DENIED_BY_DEFAULT` (`get_prompt`, `get_load`, `get_resource_usage`: a server's prompts and its
load and memory are the operator's business, not the public's). The original's default role
allowed only `chat_stream`, `clear_context` and `set_feedback`, which also shut out its own web
page; ours keeps the page and the per-conversation APIs (each touches only the caller's own
conversation) open. A role table opens the rest to whom it names. With a role table, a request
without a role and an unknown API name are denied, never crash. Secrets are compared in
constant time.

Role table format, `{role_name: {"apis": {...}}}` where `apis` holds:
``allow`` ("all" or a list of `API_NAMES`), ``auth_method`` (one of `AUTH_METHODS`),
the secret for that method (``ui_pass_phrase``, ``ui_pass_phrase_sha256``, ``header_phrase``;
for ``header_phrase_sha256`` the hex digest goes in ``header_phrase_sha256`` or, as in the
original, in ``header_phrase``), ``use_session`` (browser role or agent role; required for
``auth_method="nothing"``) and ``enable_dev_tool`` (bool, default False).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

API_NAMES: tuple[str, ...] = (
    "chat_stream",
    "clear_context",
    "get_prompt",
    "set_generation_params",
    "get_generation_params",
    "set_feedback",
    "get_load",
    "get_resource_usage",
    "webui_index",
    "webui_js",
    # ours, for the web page: set the conversation's system text, read a reply's statistics
    "set_system_prompt",
    "get_reply_stats",
    # ours: the conversation routes (/conversations...), one name for all of them
    "conversations",
)

AUTH_METHODS: tuple[str, ...] = (
    "nothing",
    "ui_pass_phrase",
    "ui_pass_phrase_sha256",
    "header_phrase",
    "header_phrase_sha256",
)

# Without a role table, these answer 403 (see the module docstring).
DENIED_BY_DEFAULT: tuple[str, ...] = ("get_prompt", "get_load", "get_resource_usage")

SESSION_ROLE_KEY = "chat_stream_client_role"
CHAT_STREAM_CLIENT_ROLE = SESSION_ROLE_KEY  # the original's name
AUTH_HEADER = "X-ChatStream-Auth-Header"

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_UI_METHODS = ("ui_pass_phrase", "ui_pass_phrase_sha256")
_HEADER_METHODS = ("header_phrase", "header_phrase_sha256")


def promotion_stream_text(role_name: str) -> str:
    """The reply text streamed to a browser whose pass phrase granted `role_name`."""
    return f"New role: '{role_name}' has been granted"


def forbidden_response() -> JSONResponse:
    """The 403 answer for a call the caller's role does not allow."""
    return JSONResponse(
        {"success": False, "message": "Forbidden", "detail": "Denied on role layer."},
        status_code=403,
    )


@dataclass(frozen=True)
class ClientRole:
    """One validated role. `allowed_apis` is None for "all"; `secret` is the phrase or its hex digest."""

    name: str
    allowed_apis: frozenset[str] | None
    auth_method: str
    secret: str | None
    use_session: bool
    enable_dev_tool: bool

    def allows(self, api_name: str) -> bool:
        """Whether this role may call `api_name` (unknown names never)."""
        if api_name not in API_NAMES:
            return False
        return self.allowed_apis is None or api_name in self.allowed_apis

    def matches(self, supplied: str) -> bool:
        """Constant-time check of a supplied phrase against this role's secret."""
        if self.secret is None or not isinstance(supplied, str) or not supplied:
            return False
        if self.auth_method.endswith("_sha256"):
            digest = hashlib.sha256(supplied.encode("utf-8")).hexdigest()
            return hmac.compare_digest(digest.encode("ascii"), self.secret.encode("ascii"))
        return hmac.compare_digest(supplied.encode("utf-8"), self.secret.encode("utf-8"))

    @property
    def is_default(self) -> bool:
        return self.auth_method == "nothing"


def _parse_allow(name: str, allow: Any) -> frozenset[str] | None:
    if isinstance(allow, str):
        if allow == "all":
            return None
        raise ValueError(f"client role '{name}': allow must be \"all\" or a list of API names, got {allow!r}")
    if not isinstance(allow, (list, tuple, set, frozenset)):
        raise TypeError(
            f"client role '{name}': allow must be \"all\" or a list of API names, got {type(allow).__name__}"
        )
    for api in allow:
        if not isinstance(api, str):
            raise TypeError(f"client role '{name}': API names in allow must be strings, got {api!r}")
        if api not in API_NAMES:
            raise ValueError(f"client role '{name}': unknown API name {api!r}; known names: {', '.join(API_NAMES)}")
    return frozenset(allow)


def _parse_secret(name: str, method: str, apis: dict[str, Any]) -> str | None:
    if method == "nothing":
        return None
    keys = [method]
    if method == "header_phrase_sha256":
        keys.append("header_phrase")  # where the original keeps the digest
    value = next((apis[k] for k in keys if k in apis), None)
    if value is None:
        raise ValueError(f"client role '{name}': auth_method {method!r} requires the key {method!r}")
    if not isinstance(value, str) or not value:
        raise TypeError(f"client role '{name}': {method!r} must be a non-empty string")
    if method.endswith("_sha256"):
        value = value.strip().lower()
        if not _SHA256_HEX.match(value):
            raise ValueError(f"client role '{name}': {method!r} must be a 64-character hex SHA-256 digest")
    return value


def _parse_use_session(name: str, method: str, apis: dict[str, Any]) -> bool:
    given = apis.get("use_session")
    if given is not None and not isinstance(given, bool):
        raise TypeError(f"client role '{name}': use_session must be a bool, got {given!r}")
    if method == "nothing":
        if given is None:
            raise ValueError(
                f"client role '{name}': auth_method 'nothing' requires use_session "
                "(True: browser default role, False: agent default role)"
            )
        return given
    implied = method in _UI_METHODS  # pass phrases are typed in a browser; header phrases come from agents
    if given is not None and given != implied:
        raise ValueError(f"client role '{name}': auth_method {method!r} needs use_session={implied}")
    return implied


def _parse_role(name: Any, spec: Any) -> ClientRole:
    if not isinstance(name, str) or not name:
        raise TypeError(f"client role names must be non-empty strings, got {name!r}")
    if not isinstance(spec, dict) or not isinstance(spec.get("apis"), dict):
        raise TypeError(f"client role '{name}': expected {{'apis': {{...}}}}, got {spec!r}")
    apis = spec["apis"]
    if "allow" not in apis:
        raise ValueError(f"client role '{name}': 'allow' is required (\"all\" or a list of API names)")
    method = apis.get("auth_method", "nothing")
    if method not in AUTH_METHODS:
        raise ValueError(f"client role '{name}': unknown auth_method {method!r}; use one of {', '.join(AUTH_METHODS)}")
    dev_tool = apis.get("enable_dev_tool", False)
    if not isinstance(dev_tool, bool):
        raise TypeError(f"client role '{name}': enable_dev_tool must be a bool, got {dev_tool!r}")
    return ClientRole(
        name=name,
        allowed_apis=_parse_allow(name, apis["allow"]),
        auth_method=method,
        secret=_parse_secret(name, method, apis),
        use_session=_parse_use_session(name, method, apis),
        enable_dev_tool=dev_tool,
    )


def _session_of(request: Request) -> Any:
    """The request's session object, or None for agents (and apps without sessions)."""
    return getattr(request.state, "session", None)


def _session_dict(session: Any) -> MutableMapping[str, Any] | None:
    if hasattr(session, "get_session"):
        return session.get_session()
    return session if isinstance(session, MutableMapping) else None


class ClientRoles:
    """The validated role table and the per-request checks built on it."""

    def __init__(self, client_roles: dict[str, Any] | None = None,
                 denied_by_default: tuple[str, ...] = DENIED_BY_DEFAULT) -> None:
        self.denied_by_default = denied_by_default  # without a role table
        self._roles: dict[str, ClientRole] = {}
        self._browser_default: ClientRole | None = None
        self._agent_default: ClientRole | None = None
        if client_roles is None:
            return
        if not isinstance(client_roles, dict):
            raise TypeError(f"client_roles must be a dict of role name to role spec, got {type(client_roles).__name__}")
        self._roles = {name: _parse_role(name, spec) for name, spec in client_roles.items()}
        browser = [r.name for r in self._roles.values() if r.is_default and r.use_session]
        agent = [r.name for r in self._roles.values() if r.is_default and not r.use_session]
        if len(browser) != 1:
            found = ", ".join(repr(n) for n in browser) or "none"
            raise ValueError(
                "client_roles needs exactly one browser default role "
                f"(auth_method 'nothing', use_session True); found {found}"
            )
        if len(agent) > 1:
            raise ValueError(
                "client_roles allows at most one agent default role "
                f"(auth_method 'nothing', use_session False); found {', '.join(repr(n) for n in agent)}"
            )
        self._browser_default = self._roles[browser[0]]
        self._agent_default = self._roles[agent[0]] if agent else None

    @property
    def enabled(self) -> bool:
        """False when built with `client_roles=None`: the default policy applies (no roles)."""
        return bool(self._roles)

    @property
    def roles(self) -> dict[str, ClientRole]:
        return dict(self._roles)

    def role_for(self, request: Request) -> str | None:
        """This request's role name (None when access control is off or an agent has no role)."""
        if not self.enabled:
            return None
        session = _session_of(request)
        if session is not None:
            return self._browser_role(session)
        supplied = request.headers.get(AUTH_HEADER)
        if supplied:
            for role in self._roles.values():
                if role.auth_method in _HEADER_METHODS and role.matches(supplied):
                    return role.name
        return self._agent_default.name if self._agent_default else None

    def verify(self, request: Request, api_name: str) -> JSONResponse | None:
        """None when the request may call `api_name`, otherwise the 403 response to send."""
        if not self.enabled:
            allowed = api_name in API_NAMES and api_name not in self.denied_by_default
            return None if allowed else forbidden_response()
        name = self.role_for(request)
        role = self._roles.get(name) if name is not None else None
        if role is None or not role.allows(api_name):
            return forbidden_response()
        return None

    def try_promote(self, request: Request, user_input: str) -> str | None:
        """Grant a browser the role whose UI pass phrase is `user_input`; the role name, or None."""
        session = _session_of(request)
        data = _session_dict(session) if session is not None else None
        if not self.enabled or data is None:
            return None
        for role in self._roles.values():
            if role.auth_method in _UI_METHODS and role.matches(user_input):
                self._store(session, data, role.name)
                return role.name
        return None

    def describe(self, role_name: str) -> dict[str, Any]:
        """A role as the original described it: `{client_role_name, allowed_apis, enable_dev_tool}`."""
        role = self._roles[role_name]
        apis = "all" if role.allowed_apis is None else [n for n in API_NAMES if n in role.allowed_apis]
        return {"client_role_name": role.name, "allowed_apis": apis, "enable_dev_tool": role.enable_dev_tool}

    def dev_tool_enabled(self, request: Request) -> bool:
        """Whether this request's role turns on the web UI's developer tools."""
        name = self.role_for(request)
        role = self._roles.get(name) if name is not None else None
        return role is not None and role.enable_dev_tool

    def _browser_role(self, session: Any) -> str | None:
        data = _session_dict(session)
        if data is None:
            return None
        stored = data.get(SESSION_ROLE_KEY)
        if isinstance(stored, dict):  # the original kept {client_role_name, allowed_apis, ...}
            stored = stored.get("client_role_name")
        role = self._roles.get(stored) if isinstance(stored, str) else None
        if role is not None and role.use_session:
            return role.name
        if self._browser_default is None:  # unreachable while enabled; deny rather than crash
            return None
        self._store(session, data, self._browser_default.name)
        return self._browser_default.name

    @staticmethod
    def _store(session: Any, data: MutableMapping[str, Any], role_name: str) -> None:
        data[SESSION_ROLE_KEY] = role_name
        save = getattr(session, "save_session", None)
        if callable(save):
            save()

