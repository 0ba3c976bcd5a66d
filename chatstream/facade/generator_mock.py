"""The Generator Mock: canned replies streamed like a real model's, with no model at all.

Owns: `MockChatGenerator`, a chat generator with the same `generate(chat_prompt, opts)` contract as the
engine-backed one, its canned texts, and its word/character tokenization. Start-up is instant, which is the point:
restart a server or drive a client while developing without loading any weights. No torch or transformers here.

`mock_params`:
- `type` (or the builtin `type` as the key, as the original's docs write it): "round" (default) numbered sentences in turn, reply number (turn - 1) mod 12; "long" one long
  multi-paragraph story; "echo" the user's last input;
- `initial_wait_sec` (default 0): sleep before the first token;
- `time_per_token_sec` (default 0.1): sleep before each token.
"""

from __future__ import annotations

import asyncio
import math
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chatstream.facade.chat_output import GenerateOptions, ReplyChunk, ReplyFormatter
from chatstream.facade.prompt_hooks import prompt_hooks
from chatstream.facade.reply_log import GenerationRecord, ReplyLog, ReplyTimer

if TYPE_CHECKING:
    from chatstream.chat_prompt.abstract_chat_prompt import AbstractChatPrompt


@dataclass(frozen=True)
class PreparedMockReply:
    """One canned reply, ready to stream."""

    chat_prompt: AbstractChatPrompt
    formatter: ReplyFormatter
    message_id: str | None
    tokens: list[str]
    joiner: str
    post_process_callback: Callable[[str], Awaitable[object]] | None

MOCK_TYPES = ("round", "long", "echo")
DEFAULT_MOCK_TYPE = "round"
DEFAULT_INITIAL_WAIT_SEC = 0.0
DEFAULT_TIME_PER_TOKEN_SEC = 0.1
_PARAM_KEYS = ("type", "initial_wait_sec", "time_per_token_sec")

ROUND_REPLIES = (
    "(1) Once upon a time, in a quiet harbour town, an old lighthouse keeper named Ilse lived alone with a grey cat "
    "called Pepper. Every evening she climbed the two hundred steps of the tower, polished the great lamp, and "
    "watched the fishing boats come home across the darkening water.",
    "(2) One stormy night the lamp flickered and went out. Ilse searched the storeroom for a spare wick but found "
    "only an empty box, a rusty key, and a folded map that she had never seen before. Pepper sat on the map and "
    "refused to move, as if to say that it mattered.",
    "(3) The map showed a path along the cliffs to a cave marked with a tiny drawing of a flame. Ilse lit a lantern, "
    "wrapped herself in her oilskin coat, and set out into the rain, with Pepper riding in the deep front pocket and "
    "complaining loudly about the weather.",
    "(4) Halfway along the cliffs they met a young gull with a hurt wing, huddled behind a rock. Ilse tore a strip "
    "from her scarf and bound the wing gently. The gull, whose name was Skerry, promised to guide them, because gulls "
    "know every ledge and crack of the coast.",
    "(5) Further on, a fox named Bramble blocked the narrow path and demanded a toll. Ilse had no coins, so she "
    "offered half of her cheese sandwich instead. Bramble ate it in two bites, declared it the finest toll he had "
    "ever collected, and joined the journey out of pure curiosity.",
    "(6) At the mouth of the cave the wind howled like a choir of ghosts. Inside, the walls glittered with crystals "
    "that caught the lantern light and threw it back in a hundred colours. Skerry flew ahead, Bramble sniffed the "
    "ground, and Pepper finally climbed out of the pocket to lead the way.",
    "(7) Deep in the cave they found an iron door with a keyhole shaped like a star. Ilse remembered the rusty key "
    "from the storeroom. It turned stiffly, the door groaned open, and behind it stood a stone table holding a jar of "
    "light that glowed like a piece of the morning sun.",
    "(8) Beside the jar sat a tired old tortoise who said he had guarded the light for three hundred years. The "
    "first keeper of the lighthouse had left it there for an emergency, he explained, and only someone who had "
    "helped strangers along the way could carry it out.",
    "(9) The tortoise looked at the bandaged gull, at the well-fed fox, and at the cat who had kept the map safe. "
    "Satisfied, he nodded slowly and handed the jar to Ilse. Its warmth spread through her cold fingers, and the "
    "whole cave seemed to hum a quiet, happy tune.",
    "(10) The way back was harder, because the tide had risen and waves crashed over the lower path. Bramble found "
    "a higher trail between the gorse bushes, Skerry called out warnings about loose stones, and Pepper walked in "
    "front with her tail held high like a little flag.",
    "(11) When they reached the tower, Ilse climbed the steps faster than she had in years and set the jar inside "
    "the great lamp. A beam brighter than ever before swept across the sea, and far out in the storm three lost "
    "fishing boats turned and steered safely toward the harbour.",
    "(12) From then on, the gull, the fox and the cat visited the lighthouse every evening. Ilse made tea, the "
    "tortoise sometimes came by for a slow chat, and the light in the tower never went out again. And that is the "
    "end of the story of the keeper and her friends.",
)

LONG_REPLY = (
    "In a mountain village where the snow arrived early every year, a baker named Oskar woke long before dawn to "
    "light his ovens. His bread was famous across the valley, but he was lonely, because the villagers only came by "
    "after sunrise, when all the work was already done.\n\n"
    "One winter, Oskar found a broken clockwork sparrow in a box of old tools that had belonged to his grandmother. "
    "He spent his evenings repairing it, cleaning each tiny gear with a feather and oiling the springs with a drop "
    "of butter. On the seventh night the sparrow blinked, fluttered its brass wings, and asked politely whether "
    "there was anything to eat.\n\n"
    "From that day on, the sparrow kept Oskar company in the warm kitchen. It sang while the dough rose, counted the "
    "loaves aloud, and flew out each morning to tell the sleepy village which pastries were fresh. Soon people "
    "began arriving earlier and earlier, just to hear the news from the little bird, and they stayed to talk with "
    "Oskar while the first loaves cooled on the racks.\n\n"
    "When spring came and the snow slid from the roofs, the bakery had become the busiest place in the valley. "
    "Children learned to knead bread, the old miller told stories beside the oven, and the sparrow perched on the "
    "highest shelf, humming to itself. Oskar was never lonely again, and every year, on the seventh night of "
    "winter, he baked a tiny honey cake just for his brass friend."
)


def is_japanese(text: str) -> bool:
    """At least 3 full-width characters and fewer ASCII spaces than full-width characters."""
    num_full_width = sum(1 for ch in text if unicodedata.east_asian_width(ch) in ("F", "W"))
    return num_full_width >= 3 and text.count(" ") < num_full_width


def tokenize(text: str) -> tuple[list[str], str]:
    """(tokens, joiner): Japanese text streams one character at a time, other text one space-separated word at a
    time, re-joined with single spaces (newlines stay inside the words, so paragraphs survive)."""
    if is_japanese(text):
        return list(text), ""
    return [word for word in text.split(" ") if word], " "


def _check_seconds(params: dict[str, Any], key: str, default: float) -> float:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"mock_params[{key!r}] must be a number >= 0 (seconds), got {value!r}")
    return float(value)


class MockChatGenerator:
    """A chat generator that streams canned replies; see the module docstring for `mock_params`."""

    def __init__(self, mock_params: Mapping[Any, Any] | None = None) -> None:
        # The original's docs and default write the key as the builtin `type` ({type: "round"}), which its
        # code then missed (its mock answered "long"); here that key means what it was meant to.
        params = {"type" if key is type else key: value for key, value in (mock_params or {}).items()}
        unknown = sorted(repr(key) for key in set(params) - set(_PARAM_KEYS))
        if unknown:
            # e.g. the original's stale `mock_type=` spelling: better an error than a silently ignored setting
            raise ValueError(f"unknown mock_params keys {unknown}; allowed keys are {list(_PARAM_KEYS)}")
        mock_type = params.get("type")
        if mock_type is None:
            mock_type = DEFAULT_MOCK_TYPE
        if mock_type not in MOCK_TYPES:
            raise ValueError(f"mock_params['type'] must be one of {list(MOCK_TYPES)}, got {mock_type!r}")
        self.mock_type: str = mock_type
        self.initial_wait_sec = _check_seconds(params, "initial_wait_sec", DEFAULT_INITIAL_WAIT_SEC)
        self.time_per_token_sec = _check_seconds(params, "time_per_token_sec", DEFAULT_TIME_PER_TOKEN_SEC)
        self.replies = ReplyLog()  # by message id, for /get_reply_stats (a mock token is a word or a character)

    def abort(self, message_id: str) -> None:
        """Nothing to stop: a mock reply ends when its consumer stops reading."""

    def reply_for(self, chat_prompt: AbstractChatPrompt) -> str:
        """The full canned reply for this prompt's current turn."""
        if self.mock_type == "echo":
            return chat_prompt.get_requester_last_msg() or ""
        if self.mock_type == "long":
            return LONG_REPLY
        return ROUND_REPLIES[(chat_prompt.get_turn() - 1) % len(ROUND_REPLIES)]

    def prepare(self, chat_prompt: AbstractChatPrompt, opts: GenerateOptions | None = None) -> PreparedMockReply:
        """Pick the canned reply for this turn (the ChatPrompt's hooks run here, so a failing one
        fails before any response started)."""
        opts = opts or {}
        formatter = ReplyFormatter(opts.get("output_type", "response_text"))
        with prompt_hooks(chat_prompt):
            tokens, joiner = tokenize(self.reply_for(chat_prompt))
        return PreparedMockReply(chat_prompt, formatter, opts.get("message_id"), tokens, joiner,
                                 opts.get("post_process_callback"))

    async def prepare_off_loop(self, chat_prompt: AbstractChatPrompt,
                               opts: GenerateOptions | None = None) -> PreparedMockReply:
        return self.prepare(chat_prompt, opts)  # nothing to tokenize

    def generate(self, chat_prompt: AbstractChatPrompt,
                 opts: GenerateOptions | None = None) -> AsyncIterator[ReplyChunk]:
        """Stream the reply in `opts["output_type"]` chunks (see `chatstream.facade.chat_output`).

        The history is updated after every token, so a stream that the consumer stops early keeps its partial
        reply; cancellation is not caught here. `post_process_callback("success")` is awaited once the last chunk
        has been taken, i.e. when the consumer runs the stream to its end. `generation_params` is ignored.
        """
        return self.stream(self.prepare(chat_prompt, opts))

    async def stream(self, reply: PreparedMockReply) -> AsyncIterator[ReplyChunk]:
        chat_prompt, message_id, formatter, tokens, joiner = (
            reply.chat_prompt, reply.message_id, reply.formatter, reply.tokens, reply.joiner)

        def record(text: str) -> None:
            # Same order as the engine-backed generator: the text, then the ID on the message that now holds it.
            chat_prompt.set_responder_last_msg(text)
            if message_id is not None:
                chat_prompt.set_responder_last_msg_id(message_id)

        timer = ReplyTimer()
        self.replies.begin(message_id)
        text, num_sent, finished, failed = "", 0, False, False
        try:
            await asyncio.sleep(self.initial_wait_sec)
            if not tokens:  # an empty echo still ends the reply properly
                record("")
                finished = True
                yield formatter.chunk("", last=True)
            for index, token in enumerate(tokens):
                await asyncio.sleep(self.time_per_token_sec)
                text = token if index == 0 else text + joiner + token
                record(text)
                timer.token()
                num_sent = index + 1
                finished = num_sent == len(tokens)
                yield formatter.chunk(text, last=finished)
        except Exception:
            failed = True
            raise
        finally:
            reason = "error" if failed else ("stop" if finished else "abort")
            self.replies.end(GenerationRecord(
                message_id, 0, 0, num_sent, reason, False, text, timer.time_to_first_token_sec, timer.decode_sec))
        if reply.post_process_callback is not None:
            await reply.post_process_callback("success")
