"""`ChatStream`: the original ChatStream's API on top of our engine.

It owns chat semantics and never touches tensors: sessions and history (through the request
handler), ChatPrompt rendering, regenerate, the finish callback, the /chat_stream wire format,
and admission (N generations run, Q wait, the rest get 429). Generations that hold a run slot
are batched together by the engine thread; the event loop only tokenizes and streams.

Conversations live in the conversation store (`conversation_store=`: a URL or a store; `memory`
by default), for /chat_stream, the web page and the console alike (`ConversationRequestHandler`,
`ConversationTurns`).

A /chat_stream request goes: role check -> body check -> which conversation (the request's
`conversation_id`, else the session's current one) -> its turn (one reply per conversation at a
time) -> a run slot (or 429; `TurnGate` bounds and counts both waits) -> the request handler
opens the turn and returns a streaming response -> when the stream ends, for whatever reason,
the reply is stored, the slot and the turn are given back and the callback is called once.
Requests refused before they got a slot (400, 403, 404, 429, 503) do not call the callback.

The request handler, its callback, the ChatPrompt class and the finish callback are user code:
whatever they raise, return or forget, the slot and the lock are released (`FinishReport`,
`GuardedResponse`), the client gets an error it can read, the traceback is logged once and the
next request is served.

`ChatStream()` may be built with no model and configured later (`configure(model=...)`); until
then /chat_stream answers 503.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatstream.facade.admission import Admission
from chatstream.facade.chat_logging import chat_logger
from chatstream.facade.chat_output import ChatReplyGenerator, ReplyChunk
from chatstream.facade.chat_stream_requests import ChatStreamRequests, FinishCallback
from chatstream.facade.client_roles import ClientRoles
from chatstream.facade.console_conversation import ConsoleConversation
from chatstream.facade.conversation_handler import ConversationRequestHandler
from chatstream.facade.conversation_turns import ConversationTurns
from chatstream.facade.engine_options import check_engine_options
from chatstream.facade.generation_params import build_params
from chatstream.facade.log_locale import EasyLocale
from chatstream.facade.offload import Offload
from chatstream.facade.request_handler import AbstractRequestHandler
from chatstream.facade.session_apis import SessionApis
from chatstream.facade.store_handle import StoreHandle
from chatstream.facade.turn_gate import TurnGate

if TYPE_CHECKING:
    from chatstream.chat_prompt.abstract_chat_prompt import AbstractChatPrompt
    from chatstream.conversations import ConversationStore
    from chatstream.engine.builder import DeviceArg, ModelArg, TokenizerArg
    from chatstream.engine.engine_client import EngineClient
    from chatstream.mock.recorder import RecordTo
    from chatstream.mock.transformer_mock import MockTransformer

__all__ = ["ChatStream", "FinishCallback"]


class ChatStream(ChatStreamRequests, SessionApis):
    """The original ChatStream's constructor and handlers, served by our engine.

    Without `use_mock_response`, `model` is a transformers model (used where it is), a local
    directory, a hub id, `"smollm2"`, or a recording (replayed); `engine_options` are
    `EngineConfig` fields, `dtype` and `model_impl` (an unknown keyword is a TypeError, with or without a
    model). `record_to` (or `probe_mode_enabled=True`) records every generation for replay,
    into `recording_dir`. `engine` is the running engine as an `EngineClient` (None with
    `use_mock_response`, or before a model is configured).

    `conversation_store`: where conversations and sessions live: a URL (`memory`, the default;
    `sqlite:///PATH`; `redis://HOST:PORT/DB`), an open `ConversationStore`, or a `StoreHandle`.
    `max_waiting_per_session`: how many /chat_stream requests of one session may wait for their
    conversations' turns (None: only `max_queue_size` bounds them).
    """

    def __init__(
        self, name: str = "node:0", model: ModelArg | MockTransformer = None, tokenizer: TokenizerArg = None,
        token_sampler: object | None = None, num_gpus: int | None = None, device: DeviceArg = None,
        num_of_concurrent_executions: int = 2, max_queue_size: int = 5, too_many_request_as_http_error: bool = True,
        use_mock_response: bool = False, mock_params: dict[Any, Any] | None = None,
        chat_prompt_clazz: type[AbstractChatPrompt] | None = None,
        max_new_tokens: int = 256, context_len: int | None = 1024, temperature: float = 1.0, top_k: int | None = None,
        top_p: float | None = 1.0, repetition_penalty: float | None = 1.0,
        repetition_penalty_method: str = "multiplicative", frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0, add_special_tokens: bool | None = None,
        request_handler: AbstractRequestHandler | None = None, logger: logging.Logger | None = None,
        locale: str | None = None, client_roles: dict[str, Any] | None = None, seed: int | None = 42,
        probe_mode_enabled: bool = False, record_to: RecordTo = None, retry_after_sec: int = 1,
        conversation_store: str | ConversationStore | StoreHandle | None = None,
        max_waiting_per_session: int | None = None,
        **engine_options: Any,
    ) -> None:
        check_engine_options(engine_options)  # the same TypeError with a model, a mock, or neither
        self.name = name
        self.logger = chat_logger(logger)
        self.locale = locale
        self.eloc = EasyLocale({"locale": locale})
        self.too_many_request_as_http_error = too_many_request_as_http_error
        self.retry_after_sec = retry_after_sec
        self.token_sampler = token_sampler
        self.client_roles = ClientRoles(client_roles)
        self.admission = Admission(num_of_concurrent_executions, max_queue_size)
        self.turn_gate = TurnGate(self.admission, max_waiting_per_session)
        self.conversations = StoreHandle.of(conversation_store)
        self._callback_tasks: set[asyncio.Task[object]] = set()
        self._warned_handlers: set[str] = set()
        self.params = build_params(
            temperature=temperature, max_new_tokens=max_new_tokens, context_len=context_len, top_k=top_k,
            top_p=top_p, repetition_penalty=repetition_penalty, repetition_penalty_method=repetition_penalty_method,
            frequency_penalty=frequency_penalty, presence_penalty=presence_penalty,
            add_special_tokens=add_special_tokens, seed=seed, probe_mode_enabled=probe_mode_enabled)
        self.engine: EngineClient | None = None
        self.offload = Offload()  # big prompts are rendered and tokenized off the event loop
        self.recording_dir: Path | None = None
        self.use_mock_response = False
        self.chat_generator: ChatReplyGenerator | None = None
        self.tokenizer: Any = tokenizer
        self.device: Any = device
        self.num_gpus: int | None = num_gpus
        self._chat_prompt_clazz = chat_prompt_clazz
        self._request_handler = request_handler or ConversationRequestHandler()
        self.conversation_turns: ConversationTurns | None = None
        self.console = ConsoleConversation(self.conversations, self._turns, self.create_chat_prompt)
        if use_mock_response or model is not None:
            self.configure(model, tokenizer, device, use_mock_response=use_mock_response, mock_params=mock_params,
                           num_gpus=num_gpus, record_to=record_to, **engine_options)
        else:
            self._inject_handler()

    def configure(
        self, model: ModelArg | MockTransformer = None, tokenizer: TokenizerArg = None, device: DeviceArg = None, *,
        use_mock_response: bool = False, mock_params: dict[Any, Any] | None = None, num_gpus: int | None = None,
        record_to: RecordTo = None, **engine_options: Any,
    ) -> None:
        """Give a ChatStream built without a model its model (or the generator mock) and start it.

        The same arguments as the constructor's; a ChatStream that already has one is refused."""
        if self.chat_generator is not None:
            raise RuntimeError("this ChatStream already has a model (or the mock); build a new ChatStream instead")
        check_engine_options(engine_options)
        if use_mock_response:
            self.use_mock_response = True
            self.tokenizer, self.device, self.num_gpus = tokenizer, device, 0
            from chatstream.facade.generator_mock import MockChatGenerator

            self.chat_generator = MockChatGenerator(mock_params)
        else:
            if model is None:
                raise ValueError("ChatStream.configure needs a model (or use_mock_response=True)")
            from chatstream.facade.chat_generator import ChatGenerator
            from chatstream.facade.engine_setup import recording_requested, start_engine

            started = start_engine(model, tokenizer, device, self.params["seed"], self.admission.max_running,
                                   engine_options, recording_requested(self.params["probe_mode_enabled"], record_to))
            self.engine, self.tokenizer, self.device = started.engine, started.tokenizer, started.device
            self.recording_dir = started.recording_dir
            if self.recording_dir is not None:
                self.logger.info("recording every generation into %s (replay: MockTransformer(%r))",
                                 self.recording_dir, self.recording_dir.name)
            # Resource reports show the GPUs the model is on without extra configuration.
            self.num_gpus = (1 if num_gpus is None else num_gpus) if self.device.type == "cuda" else 0
            self.chat_generator = ChatGenerator(started.engine, self.tokenizer, self.params, self.logger,
                                                self.token_sampler, self.offload)
        self._inject_handler()

    # -- what the request handler is given -----------------------------------------------------------
    @property
    def chat_prompt_clazz(self) -> type[AbstractChatPrompt] | None:
        return self._chat_prompt_clazz

    @chat_prompt_clazz.setter
    def chat_prompt_clazz(self, clazz: type[AbstractChatPrompt] | None) -> None:
        self._chat_prompt_clazz = clazz
        self._inject_handler()

    @property
    def request_handler(self) -> AbstractRequestHandler:
        return self._request_handler

    @request_handler.setter
    def request_handler(self, handler: AbstractRequestHandler) -> None:
        self._request_handler = handler
        self._inject_handler()

    @property
    def client_role_wrapper(self) -> ClientRoles:
        """The original's name for the role table."""
        return self.client_roles

    def _inject_handler(self) -> None:
        handler = self._request_handler
        for attr, value in (("chat_generator", self.chat_generator), ("chat_prompt_clazz", self._chat_prompt_clazz),
                            ("tokenizer", self.tokenizer), ("logger", self.logger), ("eloc", self.eloc),
                            ("client_role_wrapper", self.client_roles)):
            setattr(handler, attr, value)
        if self.chat_generator is not None and self.conversation_turns is None:
            self.conversation_turns = ConversationTurns(self.chat_generator, self.create_chat_prompt, self.tokenizer,
                                                        self.logger)
        if isinstance(handler, ConversationRequestHandler):
            handler.conversations = self.conversations
            handler.turns = self.conversation_turns

    def _turns(self) -> ConversationTurns:
        if self.conversation_turns is None:
            raise RuntimeError("no model: call chat_stream.configure(model=...) first")
        return self.conversation_turns

    def create_chat_prompt(self) -> AbstractChatPrompt:
        """A new conversation's ChatPrompt: `chat_prompt_clazz` with the tokenizer and the preset's
        initial turns."""
        return self.request_handler.new_chat_prompt()

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def is_ready(self) -> bool:
        if self.chat_generator is None:
            return False
        return self.engine is None or self.engine.is_running

    async def start_queue_worker(self) -> None:
        """Kept for the original's startup hooks. Admission needs no worker, so requests are
        served whether or not this was awaited; it installs no signal handler."""
        self.logger.debug("start_queue_worker: admission is ready (N=%d running, Q=%d waiting)",
                          self.admission.max_running, self.admission.max_waiting)

    async def queue_worker(self) -> None:
        await self.start_queue_worker()

    def shutdown(self) -> None:
        self.offload.shutdown()
        if self.engine is not None:
            self.engine.shutdown()

    async def aclose(self) -> None:
        """`shutdown()`, and close the conversation store if this ChatStream opened it from a URL."""
        self.shutdown()
        await self.conversations.close()

    # -- console ------------------------------------------------------------------------------------
    async def handle_console_input(self, user_input: str) -> AsyncIterator[ReplyChunk]:
        """One console turn: yields `(response_text, updated_text, pos)` tuples (no queue, no HTTP
        session). The console's conversation is kept in the conversation store like any other."""
        if self.chat_generator is None:
            raise RuntimeError("no model: call chat_stream.configure(model=...) first")
        async for chunk in self.console.reply(user_input):
            yield chunk

    def get_console_chat_prompt(self) -> AbstractChatPrompt:
        """The console conversation as a ChatPrompt, created (with `build_initial_prompt`) if there is
        none yet; its system text applies to the next turn."""
        return self.console.chat_prompt()

    def clear_console_context(self) -> None:
        """The next console turn starts a new conversation."""
        self.console.clear()

    @property
    def console_chat_prompt(self) -> AbstractChatPrompt | None:
        return self.console.view
