"""OpenAI-compatible serving: from a parsed request to engine requests and back.

`OpenAIServing` owns what happens between the route and the engine: rendering the prompt to
token ids, checking it fits, the admission slot, one engine request per choice (n of them per
prompt), merging their deltas, and the answer, either a response dict or an `SSEStream`.
It takes no Starlette objects: the route hands in `disconnect_watch`, a callable whose awaitable
completes when the client goes away, so this layer runs in unit tests with a fake engine.

Slots: each HTTP request holds ONE slot of the serving context's admission (the ChatStream's),
whatever its n, so the OpenAI API and /chat_stream share one bound; a full line is a 429 with
Retry-After. The slot is freed when the answer is complete or the client leaves (for a stream:
by the stream's end, or by `SSEStream.release()`, which the response calls when the body never
started).

Size: one request may start at most `max_sequences` engine sequences (n x the number of
prompts): the larger of 8 (so every n the protocol allows works) and the server's run slots
(`--num-concurrent`), so one request never runs more sequences than the whole server lets run at
once. More is a 400 naming `n`, checked before anything is tokenized.

Length: a prompt that leaves no room is a 400; a max_tokens larger than the room left is
clamped to it (the choice then ends with finish_reason "length"), so clients that always send a
large max_tokens work with any context size.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from chatstream.chat_prompt.presets.chat_template import END_OF_TURN_TOKENS
from chatstream.engine.async_engine import EngineDeadError, RequestFailedError
from chatstream.engine.outputs import RequestDelta
from chatstream.engine.sampling_params import SamplingParams
from chatstream.facade.admission import QueueFull
from chatstream.facade.disconnect import ClientGone, DisconnectWatch, unless_disconnected
from chatstream.facade.prompt_bounds import PromptMeasure
from chatstream.http import openai_protocol as proto
from chatstream.http.openai_protocol import DONE_EVENT, ChatCompletionRequest, CompletionRequest, OpenAIError, sse
from chatstream.http.stream_merge import merge

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from chatstream.engine.engine_client import EngineClient
    from chatstream.http.serving_context import ServingContext

logger = logging.getLogger("chatstream")
MIN_SEQUENCES_PER_REQUEST = 8  # the protocol's largest n always fits


class SSEStream:
    """The body of a streaming answer: `data: ...` strings, holding one admission slot until it ends."""

    def __init__(self, events: AsyncGenerator[str, None], release: Callable[[], None],
                 abort: Callable[[], None] = lambda: None) -> None:
        self._events = events
        self.release = release  # idempotent
        self.abort = abort  # stops the engine requests; the events then end

    def __aiter__(self) -> SSEStream:
        return self

    async def __anext__(self) -> str:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        try:
            await self._events.aclose()
        finally:
            self.release()


@dataclasses.dataclass
class _Job:
    """What one HTTP request asks for: prompts x n choices; choice i answers prompt i // n."""

    kind: str  # "chat" or "completion"
    id: str
    prompts: list[list[int]]
    params: list[SamplingParams]  # per prompt
    n: int
    include_usage: bool
    created: int = dataclasses.field(default_factory=proto.now)


class OpenAIServing:
    """The /v1 endpoints' logic over one served model (its engine, tokenizer and admission)."""

    def __init__(self, context: ServingContext) -> None:
        self.context = context
        self.model_name = context.model_name

    @property
    def engine(self) -> EngineClient:
        if self.context.engine is None:  # a ChatStream with use_mock_response has no engine
            raise OpenAIError(503, "the OpenAI API needs the engine; this server runs mock responses",
                              type="service_unavailable")
        return self.context.engine

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        tokenizer = self.context.tokenizer
        if tokenizer is None:
            raise OpenAIError(503, "the served model has no tokenizer", type="service_unavailable")
        return tokenizer

    @functools.cached_property
    def stop_token_ids(self) -> list[int]:
        """The end-of-turn tokens the vocabulary holds: a chat reply ends at its turn's end."""
        vocab = self.tokenizer.get_vocab()
        return [vocab[token] for token in END_OF_TURN_TOKENS if token in vocab]

    # -- endpoints ---------------------------------------------------------------------------
    async def chat(self, request: ChatCompletionRequest,
                   disconnect_watch: DisconnectWatch) -> dict[str, Any] | SSEStream:
        self._check_model(request.model)
        self._check_size(1, request.n)
        contents = [message["content"] for message in request.template_messages()]
        self._check_bound("".join(contents), "messages")
        ids = self._checked(await self._offloaded(sum(map(len, contents)), self._chat_prompt_ids, request), "messages")
        room = self.engine.max_model_len - len(ids)
        params = request.to_sampling_params(room, max_room=room, stop_token_ids=self.stop_token_ids)
        job = _Job("chat", proto.new_id("chatcmpl"), [ids], [params], request.n, request.include_usage)
        return await self._serve(job, request.stream, disconnect_watch)

    async def completion(self, request: CompletionRequest,
                         disconnect_watch: DisconnectWatch) -> dict[str, Any] | SSEStream:
        self._check_model(request.model)
        self._check_size(len(request.prompts()), request.n)
        tokenizer = self.tokenizer
        prompts = []
        for prompt in request.prompts():
            if isinstance(prompt, str):
                self._check_bound(prompt, "prompt")
                prompt = await self._offloaded(len(prompt), tokenizer.encode, prompt)
            prompts.append(self._checked(prompt, "prompt"))
        max_model_len = self.engine.max_model_len
        params = [request.to_sampling_params(max_model_len - len(ids), max_room=max_model_len - len(ids))
                  for ids in prompts]
        job = _Job("completion", proto.new_id("cmpl"), prompts, params, request.n, request.include_usage)
        return await self._serve(job, request.stream, disconnect_watch)

    # -- request checks ----------------------------------------------------------------------
    @property
    def max_sequences(self) -> int:
        """The most engine sequences (n x prompts) one request may start."""
        return max(MIN_SEQUENCES_PER_REQUEST, self.context.admission.max_running)

    def _check_size(self, num_prompts: int, n: int) -> None:
        if num_prompts * n > self.max_sequences:
            raise OpenAIError(400, f"n x prompts = {n} x {num_prompts} = {num_prompts * n} sequences; one request may "
                                   f"ask for at most {self.max_sequences}", param="n")

    def _check_model(self, model: str | None) -> None:
        if model and model != self.model_name:  # an empty model means "the one you serve"
            raise OpenAIError(404, f"The model `{model}` does not exist; this server serves `{self.model_name}`",
                              param="model", code="model_not_found")

    def _chat_prompt_ids(self, request: ChatCompletionRequest) -> list[int]:
        tokenizer = self.tokenizer
        if not getattr(tokenizer, "chat_template", None):
            raise OpenAIError(400, "the served model's tokenizer has no chat template; use /v1/completions",
                              param="messages")
        try:
            text = tokenizer.apply_chat_template(request.template_messages(), tokenize=False,
                                                 add_generation_prompt=True)
        except Exception as exc:  # noqa: BLE001 - templates raise on messages they reject (e.g. role order)
            raise OpenAIError(400, f"the chat template rejected the messages: {exc}", param="messages") from exc
        # The template already holds the special tokens the model wants (BOS included).
        return list(tokenizer.encode(text, add_special_tokens=False))

    @functools.cached_property
    def measure(self) -> PromptMeasure:
        return PromptMeasure(self.tokenizer)

    def _check_bound(self, text: str, param: str) -> None:
        """Refuse, before tokenizing, a text that certainly has no room in the context (see `PromptMeasure`)."""
        num_tokens, max_model_len = self.measure.min_tokens(text), self.engine.max_model_len
        if num_tokens >= max_model_len:
            raise OpenAIError(400, f"{param}: the prompt has at least {num_tokens} tokens ({len(text)} characters); "
                                   f"the context holds {max_model_len}", param=param, code="context_length_exceeded")

    async def _offloaded(self, size: int, fn: Callable[..., Any], *args: Any) -> Any:
        offload = self.context.offload
        return fn(*args) if offload is None else await offload.run(size, fn, *args)

    def _checked(self, ids: list[int], param: str) -> list[int]:
        try:
            self.engine.validate_prompt(ids)
        except ValueError as exc:
            too_long = len(ids) >= self.engine.max_model_len
            raise OpenAIError(400, f"{param}: {exc}", param=param,
                              code="context_length_exceeded" if too_long else None) from exc
        return ids

    # -- admission and answers ---------------------------------------------------------------
    async def _admit(self, disconnect_watch: DisconnectWatch) -> Callable[[], None]:
        """Take a slot (waiting in line, unless the client leaves); returns its idempotent release."""
        admission, retry_after_sec = self.context.admission, self.context.retry_after_sec
        start = time.perf_counter()
        if not admission.try_acquire():
            try:
                await unless_disconnected(admission.acquire(), disconnect_watch)
            except QueueFull:
                raise OpenAIError(
                    429, f"the server is busy: {admission.max_running} requests are running and "
                         f"{admission.max_waiting} are waiting; retry after {retry_after_sec} s",
                    type="requests", code="rate_limit_exceeded",
                    headers={"Retry-After": str(retry_after_sec)}) from None
        if self.context.metrics is not None:
            self.context.metrics.observe_queue_time(time.perf_counter() - start)
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                admission.release()

        return release

    async def _serve(self, job: _Job, stream: bool,
                     disconnect_watch: DisconnectWatch) -> dict[str, Any] | SSEStream:
        release = await self._admit(disconnect_watch)
        if stream:
            return SSEStream(self._events(job, release), release, abort=lambda: self._abort(job))
        choices = self._choices(job)
        try:
            await unless_disconnected(self._collect(job, choices), disconnect_watch)
        except ClientGone:
            raise
        except Exception as exc:  # noqa: BLE001 - mapped to the HTTP answer
            raise engine_error(exc) from exc
        finally:
            choices.close()
            release()
        if job.kind == "chat":
            return choices.chat_completion(job.id, job.created, self.model_name)
        return choices.text_completion(job.id, job.created, self.model_name)

    def _abort(self, job: _Job) -> None:
        for index in range(len(job.prompts) * job.n):
            self.engine.abort(f"{job.id}-{index}")

    def _choices(self, job: _Job) -> proto.Choices:
        # Finished requests are counted by the metrics' engine observer, once per engine request.
        return proto.Choices([len(ids) for ids in job.prompts], job.n)

    def _deltas(self, job: _Job) -> AsyncIterator[tuple[int, RequestDelta]]:
        streams = []
        for k, ids in enumerate(job.prompts):
            for i in range(job.n):
                params = job.params[k]
                if params.seed is not None and i > 0:  # same seed, same sample: shift it per choice
                    params = dataclasses.replace(params, seed=params.seed + i)
                index = k * job.n + i
                streams.append(self.engine.generate(ids, params, request_id=f"{job.id}-{index}"))
        return merge(streams)

    async def _collect(self, job: _Job, choices: proto.Choices) -> None:
        async with aclosing(self._deltas(job)) as deltas:
            async for index, delta in deltas:
                choices.add(index, delta)

    async def _events(self, job: _Job, release: Callable[[], None]) -> AsyncGenerator[str, None]:
        choices = self._choices(job)
        chat = job.kind == "chat"
        usage_wanted = job.include_usage

        def chunk(items: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> str:
            if chat:
                return sse(proto.chat_chunk(job.id, job.created, self.model_name, items, usage_wanted, usage))
            return sse(proto.text_completion(job.id, job.created, self.model_name, items, usage, usage_wanted))

        try:
            if chat:  # OpenAI opens every choice with the role
                for i in range(len(choices.texts)):
                    yield chunk([proto.chat_chunk_choice(i, {"role": "assistant", "content": ""})])
            async with aclosing(self._deltas(job)) as deltas:
                async for index, delta in deltas:
                    choices.add(index, delta)
                    reason = delta.finish_reason if delta.finished else None
                    if chat:
                        if delta.new_text:
                            yield chunk([proto.chat_chunk_choice(index, {"content": delta.new_text})])
                        if reason is not None:
                            yield chunk([proto.chat_chunk_choice(index, {}, reason)])
                    elif delta.new_text or reason is not None:
                        yield chunk([proto.text_choice(index, delta.new_text, reason)])
            if usage_wanted:
                yield chunk([], choices.usage())
            yield DONE_EVENT
        except Exception as exc:  # noqa: BLE001 - the status line is sent; OpenAI clients raise on this event
            yield sse(engine_error(exc).body())
        finally:
            choices.close()
            release()


def engine_error(exc: BaseException) -> OpenAIError:
    if isinstance(exc, OpenAIError):
        return exc
    if isinstance(exc, EngineDeadError):
        return OpenAIError(503, "the engine is not running", type="service_unavailable", code="engine_dead")
    if isinstance(exc, ValueError):  # the engine refused the request's input
        return OpenAIError(400, str(exc))
    if isinstance(exc, RequestFailedError):  # this request alone failed in the engine (logged there)
        return OpenAIError(500, f"generation failed: {exc}", type="server_error", code="request_failed")
    logger.error("generation failed", exc_info=exc)
    return OpenAIError(500, "generation failed; see the server log", type="server_error")
