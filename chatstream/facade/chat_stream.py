"""`ChatStream`: the original ChatStream's API on top of our engine.

It owns chat semantics and never touches tensors: sessions and history (through the request
handler), ChatPrompt rendering, regenerate, the finish callback, the /chat_stream wire format,
and admission (N generations run, Q wait, the rest get 429). Generations that hold a run slot
are batched together by the engine thread; the event loop only tokenizes and streams.

A /chat_stream request goes: role check -> body check -> the session's lock (one reply per
conversation at a time) -> a run slot (or 429) -> the request handler opens the turn and returns
a streaming response -> when the stream ends, for whatever reason, the slot and the lock are
released and the callback is called once. Requests refused before they got a slot (400, 403,
429, 503) do not call the callback.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from chatstream.facade.admission import Admission, QueueFull
from chatstream.facade.chat_logging import chat_logger, label_for, request_label
from chatstream.facade.chat_output import ChatReplyGenerator, ReplyChunk
from chatstream.facade.chat_stream_response import DISCONNECTED_BEFORE_STREAMING
from chatstream.facade.client_roles import ClientRoles
from chatstream.facade.disconnect import ClientGone, disconnect_watch, unless_disconnected
from chatstream.facade.generation_params import build_params
from chatstream.facade.offload import Offload
from chatstream.facade.request_handler import (
    AbstractRequestHandler, ChatRequestError, SimpleSessionRequestHandler, parse_chat_request)
from chatstream.facade.session_apis import SessionApis
from chatstream.facade.session_locks import SessionLocks

if TYPE_CHECKING:
    from chatstream.chat_prompt.abstract_chat_prompt import AbstractChatPrompt
    from chatstream.engine.builder import DeviceArg, ModelArg, TokenizerArg
    from chatstream.engine.engine_client import EngineClient
    from chatstream.mock.recorder import RecordTo
    from chatstream.mock.transformer_mock import MockTransformer

# The finish callback of a /chat_stream request: (request, the original's callback message).
FinishCallback = Callable[[Request, str], object]


class ChatStream(SessionApis):
    """The original ChatStream's constructor and handlers, served by our engine.

    Without `use_mock_response`, `model` is a transformers model (used where it is), a local
    directory, a hub id, `"smollm2"`, or a recording (replayed); `engine_options` are
    `EngineConfig` fields and `dtype`. `record_to` (or `probe_mode_enabled=True`) records every
    generation for replay, into `recording_dir`. `engine` is the running engine as an
    `EngineClient` (None with `use_mock_response`).
    """

    def __init__(
        self, name: str = "node:0", model: ModelArg | MockTransformer = None, tokenizer: TokenizerArg = None,
        token_sampler: object | None = None, num_gpus: int | None = None, device: DeviceArg = None,
        num_of_concurrent_executions: int = 2, max_queue_size: int = 5, too_many_request_as_http_error: bool = True,
        use_mock_response: bool = False, mock_params: dict[str, Any] | None = None,
        chat_prompt_clazz: type[AbstractChatPrompt] | None = None,
        max_new_tokens: int = 256, context_len: int | None = 1024, temperature: float = 1.0, top_k: int | None = None,
        top_p: float | None = 1.0, repetition_penalty: float | None = 1.0,
        repetition_penalty_method: str = "multiplicative", frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0, add_special_tokens: bool | None = None,
        request_handler: AbstractRequestHandler | None = None, logger: logging.Logger | None = None,
        locale: str | None = None, client_roles: dict[str, Any] | None = None, seed: int | None = 42,
        probe_mode_enabled: bool = False, record_to: RecordTo = None, retry_after_sec: int = 1,
        **engine_options: Any,
    ) -> None:
        self.name = name
        self.logger = chat_logger(logger)
        self.locale = locale
        self.chat_prompt_clazz = chat_prompt_clazz
        self.use_mock_response = use_mock_response
        self.too_many_request_as_http_error = too_many_request_as_http_error
        self.retry_after_sec = retry_after_sec
        self.token_sampler = token_sampler
        self.client_roles = ClientRoles(client_roles)
        self.admission = Admission(num_of_concurrent_executions, max_queue_size)
        self._session_locks = SessionLocks()
        self.params = build_params(
            temperature=temperature, max_new_tokens=max_new_tokens, context_len=context_len, top_k=top_k,
            top_p=top_p, repetition_penalty=repetition_penalty, repetition_penalty_method=repetition_penalty_method,
            frequency_penalty=frequency_penalty, presence_penalty=presence_penalty,
            add_special_tokens=add_special_tokens, seed=seed, probe_mode_enabled=probe_mode_enabled)
        self.engine: EngineClient | None = None
        self.offload = Offload()  # big prompts are rendered and tokenized off the event loop
        self.recording_dir: Path | None = None
        self.chat_generator: ChatReplyGenerator
        if use_mock_response:
            from chatstream.facade.generator_mock import MockChatGenerator

            self.tokenizer, self.device, self.num_gpus = tokenizer, device, 0
            self.chat_generator = MockChatGenerator(mock_params)
        else:
            from chatstream.facade.chat_generator import ChatGenerator
            from chatstream.facade.engine_setup import recording_requested, start_engine

            started = start_engine(model, tokenizer, device, seed, num_of_concurrent_executions, engine_options,
                                   recording_requested(probe_mode_enabled, record_to))
            self.engine, self.tokenizer, self.device = started.engine, started.tokenizer, started.device
            self.recording_dir = started.recording_dir
            # Resource reports show the GPUs the model is on without extra configuration.
            self.num_gpus = (1 if num_gpus is None else num_gpus) if self.device.type == "cuda" else 0
            self.chat_generator = ChatGenerator(started.engine, self.tokenizer, self.params, self.logger,
                                                token_sampler, self.offload)
        self.request_handler = request_handler or SimpleSessionRequestHandler()
        for attr, value in (("chat_generator", self.chat_generator), ("chat_prompt_clazz", chat_prompt_clazz),
                            ("tokenizer", self.tokenizer), ("logger", self.logger)):
            setattr(self.request_handler, attr, value)
        self._console_prompt: AbstractChatPrompt | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def is_ready(self) -> bool:
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

    # -- /chat_stream -----------------------------------------------------------------------------
    async def handle_chat_stream_request(
        self, request: Request, request_body: bytes | None = None,
        callback: FinishCallback | None = None,
    ) -> Response:
        denied = self.client_roles.verify(request, "chat_stream")
        if denied is not None:
            return denied
        key = self.request_handler.conversation_key(request)
        request_label.set(label_for(key))
        if request_body is None:
            request_body = await request.body()
        try:  # a big body is parsed and checked on the tokenizing pool, off the event loop
            chat_request = await self.offload.run(len(request_body), parse_chat_request, request_body)
        except ChatRequestError as exc:
            return exc.response()
        if not chat_request.regenerate:
            role = self.client_roles.try_promote(request, chat_request.user_input or "")
            if role is not None:
                return self.client_roles_promotion_response(request, role)
        if not self.is_ready:
            return JSONResponse({"error": "engine_unavailable", "detail": "the engine is not running"},
                                status_code=503)
        await self._session_locks.acquire(key)
        try:
            admitted = await self._admit(request)
        except QueueFull:
            self._session_locks.release(key)
            self.logger.info("queue full: %d running, %d waiting", self.admission.num_running,
                             self.admission.num_waiting)
            return self._too_many_requests()
        except BaseException:
            self._session_locks.release(key)
            raise
        if not admitted:  # the client left while waiting in line; it never held a slot
            self._session_locks.release(key)
            self._notify(callback, request, DISCONNECTED_BEFORE_STREAMING)
            return Response(status_code=499)
        finished = self._finish_once(request, key, callback)
        self.logger.debug("admitted: %d running, %d waiting", self.admission.num_running, self.admission.num_waiting)
        try:
            return await self.request_handler.process_request(request, request_body, finished)
        except ChatRequestError as exc:
            finished(exc.callback_message)
            return exc.response()
        except Exception:
            self.logger.exception("process_request failed")
            finished("unknown_error_occurred,while process_request")
            return JSONResponse({"error": "internal_server_error", "detail": "process_request"}, status_code=500)

    async def _admit(self, request: Request) -> bool:
        """Wait for a run slot; False if the client went away while waiting (it then holds none).

        Raises `QueueFull` when the line is full.
        """
        if self.admission.try_acquire():
            return True
        try:
            await unless_disconnected(self.admission.acquire(), disconnect_watch(request))
        except ClientGone:
            return False
        return True

    def _finish_once(self, request: Request, key: str | None,
                     callback: FinishCallback | None) -> Callable[[str], None]:
        done = False

        def finished(message: str) -> None:
            nonlocal done
            if done:
                return
            done = True
            self.admission.release()
            self._session_locks.release(key)
            self._notify(callback, request, message)

        return finished

    def _notify(self, callback: FinishCallback | None, request: Request, message: str) -> None:
        self.logger.debug("finished: %s", message)
        if callback is not None:
            try:
                callback(request, message)
            except Exception:  # noqa: BLE001 - a user callback must not break the server
                self.logger.exception("the finish callback raised")

    def _too_many_requests(self) -> JSONResponse:
        status = 429 if self.too_many_request_as_http_error else 200
        headers = {"Retry-After": str(self.retry_after_sec)} if status == 429 else None
        return JSONResponse({"error": "too_many_requests",
                             "detail": f"{self.admission.max_running} requests are running and "
                                       f"{self.admission.max_waiting} are waiting; retry later"},
                            status_code=status, headers=headers)

    # -- console ------------------------------------------------------------------------------------
    async def handle_console_input(self, user_input: str) -> AsyncIterator[ReplyChunk]:
        """One console turn: yields `(response_text, updated_text, pos)` tuples (no queue, no session)."""
        chat_prompt = self.get_console_chat_prompt()
        chat_prompt.add_requester_msg(user_input)
        chat_prompt.add_responder_msg(None)
        async for chunk in self.chat_generator.generate(chat_prompt, {"output_type": None}):
            yield chunk

    def get_console_chat_prompt(self) -> AbstractChatPrompt:
        """The console conversation, created (with `build_initial_prompt`) if there is none yet."""
        if self._console_prompt is None:
            self._console_prompt = self.request_handler.create_chat_prompt()
        return self._console_prompt

    def clear_console_context(self) -> None:
        self._console_prompt = None

    @property
    def console_chat_prompt(self) -> AbstractChatPrompt | None:
        return self._console_prompt

