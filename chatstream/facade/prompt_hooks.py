"""Calling a user's ChatPrompt hooks safely: a failure names the hook, and what a hook returns is
checked before generation relies on it.

A ChatPrompt subclass is user code: `create_prompt`, `get_stop_strs`, the replacement hooks and
the rest may raise or return something unusable. The chat generators call them while preparing a
reply, inside `prompt_hooks(chat_prompt)`, which turns any failure into a `PromptHookError` saying
which hook of which class failed (the server answers 500 with that, and logs the traceback once).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any


class PromptHookError(Exception):
    """A ChatPrompt hook raised, or returned a value of the wrong shape; `hook` names it."""

    def __init__(self, hook: str, problem: str) -> None:
        super().__init__(f"{hook} {problem}")
        self.hook = hook


class HookResultError(ValueError):
    """A hook's return value has the wrong shape (raised inside `prompt_hooks`)."""

    def __init__(self, hook: str, message: str) -> None:
        super().__init__(message)
        self.hook = hook


def _hook_of(chat_prompt: object, traceback: TracebackType | None) -> str | None:
    """The innermost method of `chat_prompt` on the traceback, as "Class.method"."""
    name = None
    while traceback is not None:
        frame = traceback.tb_frame
        if frame.f_locals.get("self") is chat_prompt:
            name = f"{type(chat_prompt).__name__}.{frame.f_code.co_name}"
        traceback = traceback.tb_next
    return name


@contextmanager
def prompt_hooks(chat_prompt: object) -> Iterator[None]:
    """Run ChatPrompt hooks; any exception leaves as a `PromptHookError` naming the hook."""
    try:
        yield
    except PromptHookError:
        raise
    except HookResultError as exc:
        raise PromptHookError(f"{type(chat_prompt).__name__}.{exc.hook}", f"returned {exc}") from exc
    except Exception as exc:
        hook = _hook_of(chat_prompt, exc.__traceback__)
        if hook is None:  # not the ChatPrompt's doing (e.g. the tokenizer): as it is
            raise
        raise PromptHookError(hook, f"raised {type(exc).__name__}: {exc}") from exc


def checked_strings(value: Any, hook: str) -> list[str] | None:
    """A hook's list of strings (stop strings): None, or a list/tuple of str."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise HookResultError(hook, f"{value!r}, not a list of strings")
    return list(value)


def checked_pairs(value: Any, hook: str = "get_replacement_when_output") -> list[tuple[str, str]] | None:
    """A replacement hook's value: None, or a list of (old, new) string pairs."""
    if value is None:
        return None
    pairs = []
    for pair in value if isinstance(value, (list, tuple)) else [value]:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise HookResultError(hook, f"{value!r}, not a list of (old, new) string pairs")
        pairs.append((pair[0], pair[1]))
    return pairs
