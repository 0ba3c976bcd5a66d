"""`chatstream chat --url URL`: the console chat with a server that is already running.

The same `YOU: ` / `AI : ` loop as the local chat (`ConsoleChat`: `/clear`, `/system`, `/help`,
Ctrl-C stops a reply), over the OpenAI-compatible API of `chatstream serve` (or of any server that
speaks it), so trying a model does not load it a second time. The conversation lives here, in
the client, as OpenAI messages; every turn sends it whole (the server's prefix cache makes the
repeated part cheap). Stopping a reply closes its stream; the server then aborts the request and
frees its slot, and the text shown so far stays in the conversation.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openai import AsyncOpenAI

API_KEY_ENVS = ("CHATSTREAM_API_KEY", "OPENAI_API_KEY")


def add_remote_chat_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=None, metavar="URL",
                        help="chat with a running server instead of loading a model here: its address "
                             "(http://HOST:PORT, or the OpenAI base URL ending in /v1) (default: load locally)")
    parser.add_argument("--api-key", default=None,
                        help="the server's API key, with --url (default: $CHATSTREAM_API_KEY, else $OPENAI_API_KEY)")


def api_base_url(url: str) -> str:
    """The OpenAI base URL of a server given as http://HOST:PORT or already as .../v1."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


class RemoteChatSession:
    """A conversation with the model `model` of the server behind `client` (a `ChatSession`).

    `params`: the sampling options sent with every turn (temperature, top_p, max_tokens, ...).
    """

    def __init__(self, client: AsyncOpenAI, model: str, system: str | None = None,
                 params: dict[str, Any] | None = None) -> None:
        self.client = client
        self.model = model
        self.system = system
        self.params = dict(params or {})
        self.messages: list[dict[str, str]] = []
        self._finish_reason: str | None = None
        self._usage: Any = None

    async def stream_reply(self, text: str) -> AsyncIterator[str]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        turn = {"role": "user", "content": text}
        self._finish_reason, self._usage = None, None
        pieces: list[str] = []
        completed = False
        try:
            stream = await self.client.chat.completions.create(
                model=self.model, messages=[*system, *self.messages, turn], stream=True,
                stream_options={"include_usage": True}, **self.params)
            async with stream:  # leaving early closes the connection: the server aborts the request
                async for chunk in stream:
                    if chunk.usage is not None:
                        self._usage = chunk.usage
                    for choice in chunk.choices:
                        if choice.delta.content:
                            pieces.append(choice.delta.content)
                            yield choice.delta.content
                        if choice.finish_reason:
                            self._finish_reason = choice.finish_reason
            completed = True
        finally:
            # A stopped reply stays in the conversation as far as it was shown; a turn that failed
            # before any text leaves no trace.
            if completed or pieces:
                self.messages += [turn, {"role": "assistant", "content": "".join(pieces)}]

    def status(self, interrupted: bool) -> str:
        if interrupted or self._finish_reason is None:
            return "[interrupted]" if interrupted else "[the server ended the reply without a finish reason]"
        parts = [f"finish_reason={self._finish_reason}"]
        usage = self._usage
        if usage is not None:
            details = getattr(usage, "prompt_tokens_details", None)
            cached = getattr(details, "cached_tokens", None) or 0
            parts += [f"{usage.completion_tokens} new tokens", f"prompt {usage.prompt_tokens} tokens ({cached} cached)"]
        return "[" + " · ".join(parts) + "]"

    def clear(self) -> None:
        self.messages = []

    def set_system(self, text: str) -> None:
        self.system = text

    def current_system(self) -> str:
        return self.system or ""


async def choose_model(client: AsyncOpenAI, wanted: str | None) -> str:
    """The served model to talk to: `wanted` if the server serves it, else the only one it serves."""
    ids = [model.id async for model in client.models.list()]
    if wanted in ids:
        return wanted
    if len(ids) == 1:
        return ids[0]
    raise LookupError(f"the server serves {', '.join(ids) or 'no model'}; name one with --model")


def sampling_params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {"temperature": args.temperature, "top_p": args.top_p,
                              "max_tokens": args.max_new_tokens}
    if args.top_k:
        params["extra_body"] = {"top_k": args.top_k}
    return params


async def chat_with_server(args: argparse.Namespace) -> int:
    from openai import APIError, AsyncOpenAI

    from chatstream.facade.console import ConsoleChat

    base_url = api_base_url(args.url)
    api_key = args.api_key or next((os.environ[k] for k in API_KEY_ENVS if os.environ.get(k)), "unused")
    client = AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=600)
    try:
        try:
            model = await choose_model(client, args.model)
        except (APIError, LookupError) as exc:
            print(f"chatstream chat: cannot use {base_url}: {exc}", file=sys.stderr)
            return 1
        print(f"Connected to {base_url}, model {model}. /help lists the commands.", flush=True)
        session = RemoteChatSession(client, model, system=args.system, params=sampling_params(args))
        await ConsoleChat(session).run()
    finally:
        await client.close()
    return 0


def run_remote_chat(args: argparse.Namespace) -> int:
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401 - line editing and history for input()
    try:
        return asyncio.run(chat_with_server(args))
    except KeyboardInterrupt:
        return 130
