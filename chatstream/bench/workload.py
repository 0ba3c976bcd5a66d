"""The benchmark's prompts: deterministic token-id lists built from a seed and the model's tokenizer.

Owns the built-in text the prompts are cut from, the optional shared prefix (every prompt starts with the same
system-prompt-like text, so prefix caching has something to find), and the `Workload` dataclass. Prompts are token
ids rather than text so every contender sees exactly the same ids: no tokenizer of any contender gets a say, and
no special tokens are added. Standard library only; the tokenizer comes in as an `encode` callable.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# Natural-ish English, so the tokenizer produces realistic token lengths (a stream of one repeated word would be
# unrealistically cheap for some tokenizers and unrealistically expensive for others).
PARAGRAPHS: tuple[str, ...] = (
    "The harbour town woke slowly. Fishing boats came in with the tide, gulls argued over the nets, and the baker "
    "on the corner opened his shutters to let the smell of fresh bread drift down towards the water.",
    "Good documentation answers three questions: what does this do, why would I want it, and how do I start? "
    "Everything else is detail that a reader can look up once the first three are settled.",
    "When the river flooded in the spring, the old stone bridge was the only crossing left standing. People "
    "walked for hours to reach it, carrying bags of flour, tools, and sometimes a very unhappy cat.",
    "A good cup of tea needs water that has just boiled, a warm pot, and patience. Three to five minutes is "
    "enough for most black teas; longer than that and the taste turns bitter.",
    "The committee met every Thursday to discuss the budget. Most weeks nothing was decided, but the biscuits "
    "were excellent and nobody wanted to be the one to suggest meeting less often.",
    "Mountains make their own weather. A clear morning can turn to fog by noon, and experienced climbers plan to "
    "be off the summit long before the afternoon clouds roll in from the valley.",
    "She opened the letter, read the first line twice, and sat down. After twenty years, her brother had "
    "finally written back, and he wanted to know whether the garden was still there.",
    "To repair a bicycle puncture, remove the wheel, lever the tyre off the rim, and find the hole by pumping "
    "a little air into the tube and listening for the hiss. A bowl of water helps.",
    "Libraries are quiet, but they are not silent: pages turn, chairs creak, someone whispers a question at "
    "the desk, and the radiator ticks as it warms up on a cold winter afternoon.",
    "The recipe called for two eggs, a cup of sugar, and butter softened at room temperature. He had one egg, "
    "brown sugar, and margarine straight from the fridge, and decided to improvise.",
    "Every spring the swallows return to the same barn, sometimes to the very same nest, after flying "
    "thousands of kilometres across deserts and seas to get there.",
    "The train was late again. Passengers checked their phones, sighed, and checked them again, as if looking "
    "often enough at the timetable might persuade it to change its mind.",
)

# The shared prefix reads like a chat system prompt, the case prefix caching exists for.
PREFIX_TEXT = (
    "You are a helpful, patient assistant for a small public library. Answer questions about opening hours, "
    "borrowing rules, events and the catalogue. Be brief and friendly. If you do not know an answer, say so and "
    "suggest asking at the front desk. Members may borrow up to ten items for three weeks and renew them twice "
    "unless another member has reserved them. Late returns cost ten cents per item per day. The library opens "
    "at nine on weekdays and at ten on Saturdays, and it is closed on Sundays and public holidays. The reading "
    "room is quiet; group study rooms can be booked at the desk for two hours at a time. Printing costs five "
    "cents per page. Children under twelve must be accompanied by an adult after six in the evening. Events "
    "this month include a poetry evening, a workshop on family history, and a weekly story time for toddlers. "
)

WARMUP_TEXT = "Hello there, how are you?"
WARMUP_MAX_TOKENS = 8  # shorter than any engine's KV block, so warm-up can never seed a prefix-cache hit


@dataclass
class Workload:
    """The prompts every contender serves, all arriving at t=0."""

    prompts: list[list[int]]
    output_len: int
    prompt_len: int  # tokens per prompt after the shared prefix
    shared_prefix_len: int
    seed: int
    warmup_prompt: list[int]

    @property
    def max_prompt_len(self) -> int:
        return max(len(p) for p in self.prompts)


def _cycled(stream: Sequence[int], start: int, length: int) -> list[int]:
    # Wrapping around is the "padding": a prompt longer than the corpus repeats it rather than failing.
    return [stream[(start + i) % len(stream)] for i in range(length)]


def build_workload(
    encode: Callable[[str], list[int]],
    num_requests: int,
    prompt_len: int,
    output_len: int,
    shared_prefix_len: int = 0,
    seed: int = 0,
) -> Workload:
    """`num_requests` prompts of `shared_prefix_len + prompt_len` tokens; the same arguments give the same ids."""
    if num_requests < 1:
        raise ValueError(f"num_requests must be >= 1, got {num_requests}")
    if prompt_len < 1:
        raise ValueError(f"prompt_len must be >= 1, got {prompt_len}")
    if output_len < 1:
        raise ValueError(f"output_len must be >= 1, got {output_len}")
    if shared_prefix_len < 0:
        raise ValueError(f"shared_prefix_len must be >= 0, got {shared_prefix_len}")
    rng = random.Random(seed)
    order = list(PARAGRAPHS)
    rng.shuffle(order)
    stream = encode(" ".join(order))
    prefix = _cycled(encode(PREFIX_TEXT), 0, shared_prefix_len) if shared_prefix_len else []
    prompts: list[list[int]] = []
    seen: set[tuple[int, ...]] = set()
    for _ in range(num_requests):
        # Distinct bodies matter: two identical prompts would let a prefix cache skip a whole prefill and flatter
        # whichever contender has one. Only a corpus shorter than the request count can run out of distinct ones.
        for _attempt in range(64):
            body = _cycled(stream, rng.randrange(len(stream)), prompt_len)
            if tuple(body) not in seen:
                break
        seen.add(tuple(body))
        prompts.append(prefix + body)
    return Workload(
        prompts=prompts,
        output_len=output_len,
        prompt_len=prompt_len,
        shared_prefix_len=shared_prefix_len,
        seed=seed,
        warmup_prompt=encode(WARMUP_TEXT)[:WARMUP_MAX_TOKENS],
    )
