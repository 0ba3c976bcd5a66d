"""The package's floors and their one-way arrows, checked on the source of every module.

Every `import` and `from ... import` statement of every file under `chatstream/` counts, also the
ones inside functions (lazy imports) and under `TYPE_CHECKING`: a dependency is a dependency
wherever it is written. The rules (ARCHITECTURE.md explains them):

- `chatstream.engine` (floor 1) imports only itself and the modules every floor shares;
- `chatstream.mock` (the Transformer Mock: an engine plug-in) adds only the engine;
- `chatstream.chat_prompt`, the conversation store and the web page's files (`chatstream.web`) import no floor;
- `chatstream.facade` (floor 2) may import everything below it, never `chatstream.http`;
- nothing below `chatstream.http` (floor 3) imports it;
- the original 0.3.0's module paths (`COMPAT_SHIMS`: root modules and packages that only re-export
  our implementation) may import the facade and everything below it, never the server; no floor
  imports them.

Package `__init__` files that only map public names to modules (`importlib` by string) are
name indexes, not imports, and are not followed.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "chatstream"

# Root modules that every floor may use: they depend on nothing else of the package.
SHARED = ("chatstream.cache_dir", "chatstream.loadtime", "chatstream.startup")

# package -> the packages (and shared modules) its modules may import.
ALLOWED: dict[str, tuple[str, ...]] = {
    "chatstream.engine": ("chatstream.engine", *SHARED),
    "chatstream.mock": ("chatstream.mock", "chatstream.engine", *SHARED),
    "chatstream.chat_prompt": ("chatstream.chat_prompt", *SHARED),
    "chatstream.conversations": ("chatstream.conversations", "chatstream.chat_prompt", *SHARED),
    "chatstream.web": ("chatstream.web", *SHARED),  # the page's files and how they are served
    "chatstream.facade": ("chatstream.facade", "chatstream.engine", "chatstream.mock", "chatstream.chat_prompt",
                          "chatstream.conversations", "chatstream.web", *SHARED),
    # Ray Serve replicas and their ingress: above the server, whose app each replica runs.
    "chatstream.ray": ("chatstream.ray", "chatstream.http", "chatstream.facade", "chatstream.conversations", *SHARED),
}
SHARED_ALLOWED: tuple[str, ...] = SHARED

# The original ChatStream 0.3.0's module paths, kept as thin re-exports (tests/compat/test_module_paths.py lists
# every one). `chatstream.chat_prompt` and `chatstream.mock` are floors of their own that also serve their paths.
COMPAT_SHIMS: tuple[str, ...] = (
    "chatstream.access_control", "chatstream.chat_core", "chatstream.chat_process", "chatstream.chat_process_mock",
    "chatstream.chat_prompt_presets", "chatstream.chat_stream", "chatstream.chat_stream_api_appender",
    "chatstream.chat_stream_middleware_appender", "chatstream.data", "chatstream.default_api_names",
    "chatstream.default_api_names_to_path", "chatstream.default_finish_token", "chatstream.easy_locale",
    "chatstream.merge_dic", "chatstream.mock_response_example_text", "chatstream.request_handler",
    "chatstream.resource_usage", "chatstream.token_samplers", "chatstream.util_create_streaming_response",
    "chatstream.util_ensure_torch_device", "chatstream.util_request_id", "chatstream.util_resource_file_response",
)
COMPAT_ALLOWED: tuple[str, ...] = (*COMPAT_SHIMS, *ALLOWED["chatstream.facade"], "chatstream.facade")
for _shim in COMPAT_SHIMS:
    ALLOWED[_shim] = COMPAT_ALLOWED


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool) -> set[str]:
    """Every `chatstream...` module that `source` (the text of `module`) imports, anywhere in it."""
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # `from chatstream.x import y` may import the submodule chatstream.x.y.
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                if _is_module(candidate):
                    found.add(candidate)
    return {name for name in found if name == "chatstream" or name.startswith("chatstream.")}


def _is_module(name: str) -> bool:
    path = PACKAGE_DIR.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(module: str, imports: set[str]) -> list[str]:
    """The imports of `module` that break the floors' rules."""
    rules = [pkg for pkg in ALLOWED if _within(module, pkg)]
    bad = []
    for target in sorted(imports):
        if rules:
            allowed = ALLOWED[rules[0]]
            if not any(_within(target, ok) for ok in allowed):
                bad.append(f"{module} imports {target}")
        elif module in SHARED and not any(_within(target, ok) for ok in SHARED_ALLOWED):
            bad.append(f"{module} (shared by every floor) imports {target}")
    return bad


def all_modules() -> list[tuple[str, Path]]:
    return sorted((module_name(path), path) for path in PACKAGE_DIR.rglob("*.py"))


def test_every_module_keeps_to_its_floor() -> None:
    bad = []
    for module, path in all_modules():
        imports = imported_modules(path.read_text(encoding="utf-8"), module, path.name == "__init__.py")
        bad += violations(module, imports)
    assert not bad, "imports against the floors' arrows:\n" + "\n".join(bad)


def test_the_check_sees_imports_wherever_they_are_written() -> None:
    # The rule fires on each way a forbidden import can be spelled, so the test above can fail.
    sources = {
        "import chatstream.http.app": "chatstream.http.app",
        "from chatstream.facade.chat_stream import ChatStream": "chatstream.facade.chat_stream",
        "from chatstream.facade import chat_generator": "chatstream.facade.chat_generator",
        "def f():\n    from chatstream.http import openai_serving\n": "chatstream.http.openai_serving",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from chatstream.facade import admission\n":
            "chatstream.facade.admission",
        "from ..facade import llm": "chatstream.facade.llm",
        "from chatstream import ChatStream": "chatstream",
    }
    for source, target in sources.items():
        imports = imported_modules(source, "chatstream.engine.engine_core", False)
        assert target in imports, source
        assert violations("chatstream.engine.engine_core", imports), source
    facade_imports = imported_modules("from chatstream.http.server_state import ServerState",
                                      "chatstream.facade.chat_stream", False)
    assert violations("chatstream.facade.chat_stream", facade_imports)
    ok = imported_modules("from chatstream.engine.outputs import RequestDelta\nfrom chatstream import cache_dir",
                          "chatstream.mock.replay", False)
    assert ok == {"chatstream.engine.outputs", "chatstream", "chatstream.cache_dir"}
    assert violations("chatstream.mock.replay", ok) == ["chatstream.mock.replay imports chatstream"]


def test_the_floors_exist_where_the_rules_say() -> None:
    for package in ("chatstream.engine", "chatstream.mock", "chatstream.chat_prompt", "chatstream.facade",
                    "chatstream.http"):
        assert _is_module(package), package
    # The package root holds the public names, the CLI, shared modules and compatibility paths only.
    root = sorted(p.stem for p in PACKAGE_DIR.glob("*.py"))
    shims = sorted(m.rpartition(".")[2] for m in COMPAT_SHIMS if (PACKAGE_DIR / (m.rpartition(".")[2] + ".py")).is_file())
    assert root == sorted(["__init__", "cache_dir", "cli", "loadtime", "startup", "testing", *shims])
    assert all(_is_module(shim) for shim in COMPAT_SHIMS)


def test_compat_shims_only_re_export() -> None:
    # A shim holds no implementation of its own: imports, names bound to imported objects, thin adapters that call
    # into the package. Its body stays small, so a copy of the original's code cannot hide in one.
    for module, path in all_modules():
        if any(_within(module, shim) for shim in COMPAT_SHIMS):
            lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            assert len(lines) <= 40, f"{module} is {len(lines)} lines: a shim only re-exports"


@pytest.mark.parametrize("package, forbidden", [
    ("chatstream.engine", ("chatstream.facade", "chatstream.http", "chatstream.chat_prompt", "chatstream.mock")),
    ("chatstream.facade", ("chatstream.http",)),
])
def test_importing_a_floor_loads_nothing_above_it(package: str, forbidden: tuple[str, ...]) -> None:
    # The same rule at run time: import every module of the floor in a fresh interpreter.
    modules = [m for m, _ in all_modules() if _within(m, package)]
    code = ("import importlib, json, sys\n"
            f"for m in {modules!r}:\n    importlib.import_module(m)\n"
            f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({forbidden!r}))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "[]"
