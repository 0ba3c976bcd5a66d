"""The synthetic multi-turn chat workload of `chatstream bench serve`, generated offline from a seed.

Owns `ChatRequest` (one HTTP request: the messages so far and the reply length asked for) and
`build_chat_workload`. The shape follows what chat servers see:
  * one system prompt shared by every conversation (what prefix caching is for);
  * conversations of 1 to `max_turns` turns; turn k sends the system prompt, the k-1 earlier
    exchanges and a new user message, so prompts grow along a conversation;
  * user messages and replies with long-tailed lengths: log-normal around a median, clipped
    (most are short, a few are long);
  * earlier replies are synthetic text of their planned length, so the workload does not depend
    on what a server answered and every server gets exactly the same requests.
Requests are ordered by turn, then conversation, so the first turns of all conversations come
before the second turns (with open-loop arrivals a later turn is always sent after its earlier
ones). Text is drawn from the benchmark's English paragraphs, so no tokenizer is needed here.
Standard library only.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from chatstream.bench.workload import PARAGRAPHS, PREFIX_TEXT


@dataclass(frozen=True)
class ChatRequest:
    conversation: int
    turn: int
    messages: list[dict[str, str]]
    max_tokens: int


@dataclass(frozen=True)
class ChatWorkloadSpec:
    num_conversations: int = 32
    max_turns: int = 4
    user_words_median: int = 40
    reply_tokens_median: int = 96
    reply_tokens_max: int = 256
    seed: int = 0
    system_words: int | None = None  # None: the whole built-in system prompt (about 200 tokens)

    def __post_init__(self) -> None:
        for name in ("num_conversations", "max_turns", "user_words_median", "reply_tokens_median",
                     "reply_tokens_max"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


_WORDS = " ".join(PARAGRAPHS).split()


def _long_tailed(rng: random.Random, median: int, low: int, high: int) -> int:
    # Log-normal with sigma 0.6: about 90 % of draws within 0.4x to 2.7x the median.
    return max(low, min(high, round(median * math.exp(rng.gauss(0.0, 0.6)))))


def _text(rng: random.Random, num_words: int) -> str:
    start = rng.randrange(len(_WORDS))
    return " ".join(_WORDS[(start + i) % len(_WORDS)] for i in range(num_words))


def build_chat_workload(spec: ChatWorkloadSpec) -> list[ChatRequest]:
    """Every request of every conversation, in sending order; the same spec gives the same list."""
    rng = random.Random(spec.seed)
    words = PREFIX_TEXT.split()
    system = {"role": "system", "content": " ".join(words[:spec.system_words] if spec.system_words else words)}
    conversations: list[list[ChatRequest]] = []
    for conv in range(spec.num_conversations):
        history: list[dict[str, str]] = [system]
        turns = []
        for turn in range(rng.randint(1, spec.max_turns)):
            user = {"role": "user", "content": _text(rng, _long_tailed(rng, spec.user_words_median, 3, 400))}
            reply_len = _long_tailed(rng, spec.reply_tokens_median, 8, spec.reply_tokens_max)
            turns.append(ChatRequest(conv, turn, history + [user], reply_len))
            # About 0.75 words per token in English: a stand-in reply of the planned length.
            history = history + [user, {"role": "assistant", "content": _text(rng, max(1, reply_len * 3 // 4))}]
        conversations.append(turns)
    ordered = [req for turn in range(spec.max_turns) for conv in conversations for req in conv[turn:turn + 1]]
    return ordered


def poisson_arrivals(num_requests: int, rate: float, seed: int) -> list[float]:
    """Send times (seconds from the start) of a Poisson process at `rate` requests/s."""
    if rate <= 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    rng = random.Random(seed)
    now, times = 0.0, []
    for _ in range(num_requests):
        times.append(now)
        now += rng.expovariate(rate)
    return times
