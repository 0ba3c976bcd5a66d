"""The bundled chat page and its files: what `/`, `/chatstream.js` and `/webui/...` answer.

`index.html` holds an empty JSON island, `<script type="application/json" id="cs-config">{}</script>`;
the server fills it with the page's configuration (the original's `web_ui_params`, the UI
language, and whether the model is still loading). JSON in a non-executable script element is
data, not code, so nothing the server puts there can run.

The page's scripts are ES modules (`chatstream.js` imports the rest from `webui/`), and the
Markdown, sanitizer and highlighting libraries are vendored under `vendor/`, so the page works
offline and needs no build step. Only files of this package with a known suffix are served, from
a list made once; any other path is a 404.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from starlette.responses import JSONResponse, Response

SUPPORTED_LOCALES = ("en", "ja")
ASSET_PREFIX = "/webui/"
MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
_CONFIG_ISLAND = '<script type="application/json" id="cs-config">{}</script>'
# The page and its modules change with the package version; "no-cache" makes the browser check.
_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


def normalize_locale(locale: str | None) -> str | None:
    """"ja", "ja-JP", "ja_JP" -> "ja"; None -> None (the browser's language decides).

    Raises ValueError for a language the page has no strings for."""
    if locale is None or locale == "":
        return None
    language = str(locale).replace("_", "-").split("-", 1)[0].lower()
    if language not in SUPPORTED_LOCALES:
        raise ValueError(f"unsupported UI locale {locale!r}; supported: {', '.join(SUPPORTED_LOCALES)}")
    return language


def page_config(ui_params: dict[str, Any] | None, locale: str | None, loading: bool) -> dict[str, Any]:
    """The JSON the page reads at start: `options` (the original's ChatStreamUI options),
    `locale` (None: the browser's language) and `loading` (poll /health before chatting)."""
    return {"options": dict(ui_params or {}), "locale": locale, "loading": loading}


def index_response(ui_params: dict[str, Any] | None, locale: str | None, loading: bool) -> Response:
    html = _read_text("index.html")
    # "</script" would end the element early and "<!--" could change how it is parsed: JSON
    # says the same with "<", ">" and "&" escaped.
    config = json.dumps(page_config(ui_params, locale, loading), ensure_ascii=False)
    config = config.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    html = html.replace(_CONFIG_ISLAND, _CONFIG_ISLAND.replace("{}", config), 1)
    return Response(html, media_type="text/html; charset=utf-8", headers=_HEADERS)


def asset_response(path: str) -> Response:
    """A module, stylesheet or vendored library of the page, by its path in this package."""
    if path not in asset_paths():
        return JSONResponse({"error": "not_found", "detail": f"no page file {path!r}"}, status_code=404)
    media_type = MEDIA_TYPES[path[path.rindex("."):]]
    return Response(_read_text(path), media_type=media_type, headers=_HEADERS)


@lru_cache(maxsize=1)
def asset_paths() -> frozenset[str]:
    """The servable files of this package, as '/'-separated relative paths."""
    found: set[str] = set()

    def walk(folder: Traversable, prefix: str) -> None:
        for entry in folder.iterdir():
            if entry.is_dir():
                walk(entry, prefix + entry.name + "/")
            elif any(entry.name.endswith(suffix) for suffix in MEDIA_TYPES):
                found.add(prefix + entry.name)

    walk(resources.files("chatstream.web"), "")
    return frozenset(found)


def _read_text(path: str) -> str:
    node = resources.files("chatstream.web")
    for part in path.split("/"):
        node = node.joinpath(part)
    return node.read_text(encoding="utf-8")
