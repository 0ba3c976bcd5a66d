"""Ten turns of one conversation through /chat_stream, and what each turn cost: how many prompt
tokens it had, how many of them the prefix cache already held, and its time to first token.

Every turn continues the conversation's stored token ids, so all of the earlier turns should come
from the cache and the time to first token should stay flat as the conversation grows. Run it
with `python examples/conversation_ttft.py` (the bundled SmolLM2-135M-Instruct, greedy, served
in this process on a free port), or against a running server with `--url http://127.0.0.1:8000`.
It prints a Markdown table; run it when the machine is otherwise idle.
"""

from __future__ import annotations

import argparse
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

QUESTIONS = [
    "Hello! What can you help me with?",
    "What is the capital of France?",
    "Tell me one interesting fact about it.",
    "How many people live there?",
    "What is a famous museum there?",
    "What can I see in that museum?",
    "Which river flows through the city?",
    "Name a bridge over that river.",
    "What food should I try there?",
    "Thank you! Can you summarise our chat in one sentence?",
]


@dataclass(frozen=True)
class TurnFigures:
    turn: int
    prompt_tokens: int
    cached_tokens: int
    earlier_tokens: int  # every token of the earlier turns: the previous prompt and its reply
    output_tokens: int
    time_to_first_token_s: float


def measure_turns(url: str, questions: list[str] = QUESTIONS) -> list[TurnFigures]:
    """Run the turns in one new conversation; the server's own figures for each reply."""
    figures: list[TurnFigures] = []
    with httpx.Client(base_url=url, timeout=600) as client:
        conversation_id = client.post("/conversations", json={}).json()["id"]  # and the session's cookie
        earlier = 0
        for number, question in enumerate(questions, start=1):
            with client.stream("POST", "/chat_stream",
                               json={"user_input": question, "conversation_id": conversation_id}) as response:
                response.raise_for_status()
                message_id = response.headers["X-ChatStream-Last-Generated-Message-Id"]
                for _ in response.iter_bytes():
                    pass
            stats = _reply_stats(client, message_id, conversation_id)
            figures.append(TurnFigures(number, stats["num_prompt_tokens"], stats["num_cached_tokens"], earlier,
                                       stats["num_output_tokens"], stats["time_to_first_token_sec"]))
            earlier = stats["num_prompt_tokens"] + stats["num_output_tokens"]
    return figures


def _reply_stats(client: httpx.Client, message_id: str, conversation_id: str) -> dict:
    for _ in range(600):
        body = client.get("/get_reply_stats", params={"message_id": message_id,
                                                      "conversation_id": conversation_id}).json()
        if body.get("finished"):
            return body["stats"]
        time.sleep(0.05)
    raise TimeoutError(f"reply {message_id} did not finish")


def table(figures: list[TurnFigures]) -> str:
    first = figures[0].time_to_first_token_s
    lines = ["| turn | prompt tokens | earlier turns' tokens | cached | new | reply tokens | TTFT (ms) | vs turn 1 |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for f in figures:
        lines.append(f"| {f.turn} | {f.prompt_tokens} | {f.earlier_tokens} | {f.cached_tokens} | "
                     f"{f.prompt_tokens - f.cached_tokens} | {f.output_tokens} | {f.time_to_first_token_s * 1000:.0f} | "
                     f"{f.time_to_first_token_s / first:.2f}x |")
    return "\n".join(lines)


@contextmanager
def served_smollm2(max_new_tokens: int = 64) -> Iterator[str]:
    """The bundled SmolLM2 (greedy) behind the one-line setup, on a free port of 127.0.0.1."""
    import uvicorn
    from fastapi import FastAPI

    from chatstream import ChatPromptChatTemplate, ChatStream

    chat_stream = ChatStream(model="smollm2", chat_prompt_clazz=ChatPromptChatTemplate, temperature=0.0,
                             max_new_tokens=max_new_tokens, num_of_concurrent_executions=1)
    app = FastAPI()
    chat_stream.append_middlewares(app)
    chat_stream.append_apis(app, {"all": True})
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
        chat_stream.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=None, help="a running ChatStream server (default: serve SmolLM2 here)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    if args.url:
        print(table(measure_turns(args.url)))
        return
    with served_smollm2(args.max_new_tokens) as url:
        measure_turns(url, ["Hi!", "How are you?"])  # warm-up: a process's first requests pay one-time costs
        print(table(measure_turns(url)))


if __name__ == "__main__":
    main()
