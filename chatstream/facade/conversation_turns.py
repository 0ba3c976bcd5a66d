"""`ConversationTurns`: one reply of a stored conversation, from opening it to storing it.

The store is where the history lives; a turn goes:

1. `open`: `begin_turn` (the user message and an open reply, in one transaction) or `regenerate`;
   the conversation becomes a ChatPrompt, and the prompt ids continue the stored ones where they
   can (`conversation_prompt.continuation_ids`);
2. `stream`: the chat generator writes the reply; a heartbeat task stores the text so far about
   once a second (`update_reply`, which also renews the reply's lease), so a crash keeps it;
3. when the stream ends, for whatever reason, its text, token ids and figures are stored in one
   `finish_reply` (or the turn is dropped with `discard_turn` when nothing was generated): a
   reply cut short is kept as `interrupted`. This runs in its own task, because a stream may end
   inside a cancelled scope where nothing can be awaited; `turn.closed` resolves when it is done.

The HTTP handler (`conversation_handler.py`) and the console (`ChatStream.handle_console_input`)
both run their turns here. Everything runs on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chatstream.conversations import (
    Conversation, ConversationStore, NotFound, ReplyClosed, ReplyStats, StoreError, TurnTokens)
from chatstream.facade.conversation_prompt import (
    Continuation, chat_prompt_of, continuation_ids, prompt_model_id, tokenizer_model_name)
from chatstream.facade.output_replacement import visible_reply

if TYPE_CHECKING:
    from chatstream.chat_prompt.abstract_chat_prompt import AbstractChatPrompt
    from chatstream.facade.chat_output import ChatReplyGenerator, GenerateOptions, ReplyChunk
    from chatstream.facade.reply_log import GenerationRecord

HEARTBEAT_MAX_S = 1.0


@dataclass
class OpenTurn:
    """A reply being written: the conversation as stored when it opened (its last message is the
    open reply), the ChatPrompt the generator writes into, and the prompt ids to continue from."""

    store: ConversationStore
    session_id: str
    conversation: Conversation
    chat_prompt: AbstractChatPrompt
    model_id: str
    continuation: Continuation
    regenerated: bool
    started: bool = False
    closing: bool = False
    closed: asyncio.Future[Conversation | None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    @property
    def conversation_id(self) -> str:
        return self.conversation.id

    @property
    def reply_id(self) -> str:
        reply = self.conversation.open_reply
        assert reply is not None
        return reply.id


class ConversationTurns:
    """Runs the replies of stored conversations for one chat generator (see the module docstring)."""

    def __init__(self, chat_generator: ChatReplyGenerator, create_chat_prompt: Callable[[], AbstractChatPrompt],
                 tokenizer: Any, logger: logging.Logger, model_name: str | None = None) -> None:
        self.chat_generator = chat_generator
        self.create_chat_prompt = create_chat_prompt
        self.tokenizer = tokenizer
        self.logger = logger
        self.model_name = model_name or (tokenizer_model_name(tokenizer) if tokenizer is not None else "mock")
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- opening -------------------------------------------------------------------------------------
    async def open(self, store: ConversationStore, session_id: str, conversation_id: str,
                   user_text: str | None, into: AbstractChatPrompt | None = None) -> OpenTurn:
        """Open a reply: to `user_text`, or again to the last user message (`user_text` None); the
        generator writes into a new ChatPrompt, or `into` an existing one. Raises the store's
        errors (`ConversationNotFound`, `TurnInProgress`, `NothingToRegenerate`, ...)."""
        if user_text is None:
            conversation = await store.regenerate(session_id, conversation_id)
        else:
            conversation = await store.begin_turn(session_id, conversation_id, user_text)
        try:
            chat_prompt = chat_prompt_of(conversation, self.create_chat_prompt, into=into)
            model_id = prompt_model_id(self.model_name, chat_prompt)
            continuation = self._continuation(chat_prompt, conversation, model_id)
        except BaseException:
            reply = conversation.open_reply
            if reply is not None:
                self._spawn(self._drop(store, session_id, conversation, user_text is None))
            raise
        self.logger.debug("turn %s: %s", conversation.open_reply.id if conversation.open_reply else "-",
                          continuation.reason)
        return OpenTurn(store, session_id, conversation, chat_prompt, model_id, continuation, user_text is None)

    def _continuation(self, chat_prompt: AbstractChatPrompt, conversation: Conversation, model_id: str) -> Continuation:
        if self.tokenizer is None or not hasattr(self.chat_generator, "stop_token_ids"):
            return Continuation(None, "the generator takes no token ids")
        end_of_turn = list(self.chat_generator.stop_token_ids(chat_prompt))  # type: ignore[attr-defined]
        eos = getattr(self.tokenizer, "eos_token_id", None)
        if isinstance(eos, int):
            end_of_turn.append(eos)
        return continuation_ids(chat_prompt, conversation, model_id, self.tokenizer, end_of_turn)

    # -- streaming -----------------------------------------------------------------------------------
    async def prepare(self, turn: OpenTurn, opts: GenerateOptions | None = None) -> object:
        """The generator's prepared reply for this turn (off the event loop for a big history): the
        ChatPrompt's hooks run now, so one that fails raises here, before any response exists."""
        return await self.chat_generator.prepare_off_loop(turn.chat_prompt, self._options(turn, opts))

    def _options(self, turn: OpenTurn, opts: GenerateOptions | None) -> dict[str, Any]:
        options: dict[str, Any] = dict(opts or {})
        options["message_id"] = turn.reply_id
        if turn.continuation.token_ids is not None:
            options["prompt_token_ids"] = turn.continuation.token_ids
        return options

    async def stream(self, turn: OpenTurn, opts: GenerateOptions | None = None,
                     prepared: object | None = None) -> AsyncIterator[ReplyChunk]:
        """The generator's chunks for this turn (of `prepared`, else prepared now from `opts`); when
        the iteration ends (done, left early, failed) the reply is stored by a task of its own, and
        `turn.closed` resolves."""
        turn.started = True
        heartbeat = asyncio.ensure_future(self._heartbeat(turn))
        outcome = "interrupted"
        try:
            if prepared is None:
                prepared = await self.prepare(turn, opts)
            async with aclosing(self.chat_generator.stream(prepared)) as chunks:
                async for chunk in chunks:
                    yield chunk
            outcome = "complete"
        finally:
            heartbeat.cancel()
            self.close(turn, outcome)

    def close(self, turn: OpenTurn, outcome: str) -> None:
        """Store how the turn ended, in a task ("complete", "interrupted", or "not_started" for a reply
        whose stream never ran). Safe to call from synchronous code; later calls do nothing."""
        if turn.closing:
            return
        turn.closing = True
        self._spawn(self._close(turn, outcome))

    async def _close(self, turn: OpenTurn, outcome: str) -> None:
        result: Conversation | None = None
        try:
            result = await self._store_end(turn, outcome)
        except (ReplyClosed, NotFound):
            self.logger.debug("turn %s: the conversation changed meanwhile (cleared or deleted)", turn.reply_id)
        except StoreError as exc:
            self.logger.warning("turn %s: the reply could not be stored: %s", turn.reply_id, exc)
        except Exception:  # noqa: BLE001 - a failed write must not leave the turn open for ever
            self.logger.exception("turn %s: storing the reply failed", turn.reply_id)
        finally:
            if not turn.closed.done():
                turn.closed.set_result(result)

    async def _store_end(self, turn: OpenTurn, outcome: str) -> Conversation | None:
        record = self._record(turn.reply_id)
        generated = record is not None and (record.num_output_tokens > 0 or bool(record.text))
        if outcome == "not_started" or (outcome != "complete" and not generated):
            return await self._drop(turn.store, turn.session_id, turn.conversation, turn.regenerated)
        assert record is not None
        tokens = None
        if record.prompt_token_ids:
            tokens = TurnTokens(turn.model_id, record.prompt_token_ids, record.output_token_ids)
        stats = ReplyStats(record.num_prompt_tokens, record.num_cached_tokens, record.num_output_tokens,
                           _positive(record.time_to_first_token_sec), _positive(record.tokens_per_sec))
        return await turn.store.finish_reply(
            turn.session_id, turn.conversation_id, turn.reply_id, text=record.text,
            finish_reason=record.finish_reason, tokens=tokens, stats=stats, interrupted=outcome != "complete")

    async def _drop(self, store: ConversationStore, session_id: str, conversation: Conversation,
                    regenerated: bool) -> Conversation | None:
        """A reply that never produced anything leaves no half-open exchange behind: the user turn
        goes with it (after a regenerate there is no new user turn: the reply stays, empty and interrupted)."""
        reply = conversation.open_reply
        if reply is None:
            return None
        if regenerated:
            return await store.finish_reply(session_id, conversation.id, reply.id, text="", interrupted=True)
        return await store.discard_turn(session_id, conversation.id, reply.id)

    def _record(self, message_id: str) -> GenerationRecord | None:
        replies = getattr(self.chat_generator, "replies", None)
        return None if replies is None else replies.find(message_id)

    async def _heartbeat(self, turn: OpenTurn) -> None:
        """Store the text so far about once a second, and at least every `heartbeat_s` (the lease)."""
        interval = min(HEARTBEAT_MAX_S, turn.store.options.heartbeat_s)
        pairs = turn.chat_prompt.get_replacement_when_output() if turn.chat_prompt.is_chat_mode_enabled() else None
        written: str | None = None
        idle = 0.0
        while True:
            await asyncio.sleep(interval)
            idle += interval
            native = turn.chat_prompt.get_responder_last_msg() or ""
            text = visible_reply(native, pairs, final=False)
            if text == written and idle < turn.store.options.heartbeat_s:
                continue
            try:
                await turn.store.update_reply(turn.session_id, turn.conversation_id, turn.reply_id, text)
            except (ReplyClosed, NotFound):
                # Cleared or deleted while it was being written: stop generating it.
                self.chat_generator.abort(turn.reply_id)
                return
            except StoreError as exc:
                self.logger.warning("turn %s: the partial reply could not be stored: %s", turn.reply_id, exc)
            written, idle = text, 0.0

    def _spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _positive(value: float | None) -> float | None:
    return None if value is None or value < 0 else value
