"""Running one OpenAI request as engine requests: the slot, the choices, the answer or its stream.

`JobRunner` owns what every /v1 generation shares once its prompts and settings are known (a
`Job`): taking ONE slot of the serving context's admission (whatever its n, so the OpenAI API and
/chat_stream share one bound; a full line is a 429 with Retry-After), one engine request per
choice, merging their deltas, and either collecting them into `Choices` or handing an event
generator to an `SSEStream`. The slot is freed when the answer is complete or the client leaves
(for a stream: by the stream's end, or by `SSEStream.release()`, which the response calls when the
body never started). It takes no Starlette objects: a `disconnect_watch` completes when the client
goes away, so it runs in unit tests with a fake engine.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from chatstream.engine.async_engine import EngineDeadError, RequestFailedError
from chatstream.engine.outputs import RequestDelta
from chatstream.engine.sampling_params import SamplingParams
from chatstream.facade.admission import QueueFull
from chatstream.facade.disconnect import ClientGone, DisconnectWatch, unless_disconnected
from chatstream.http.openai.choices import Choices, Presentation
from chatstream.http.openai.wire import OpenAIError
from chatstream.http.stream_merge import merge

if TYPE_CHECKING:
    from chatstream.engine.engine_client import EngineClient
    from chatstream.http.serving_context import ServingContext

logger = logging.getLogger("chatstream")


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


class SSEStream:
    """The body of a streaming answer: event strings, holding one admission slot until it ends."""

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
class Job:
    """What one HTTP request asks for: prompts x n choices; choice i answers prompt i // n."""

    kind: str  # "chat", "completion" or "response"
    id: str
    prompts: list[list[int]]
    params: list[SamplingParams]  # per prompt
    n: int = 1
    include_usage: bool = False
    show: Presentation = dataclasses.field(default_factory=Presentation)
    created: int = dataclasses.field(default_factory=now)

    def choices(self) -> Choices:
        # Finished requests are counted by the metrics' engine observer, once per engine request.
        return Choices([len(ids) for ids in self.prompts], self.n, self.show)


EventSource = Callable[[Job, Choices, AsyncIterator[tuple[int, RequestDelta]]], AsyncGenerator[str, None]]


class JobRunner:
    """Admission, engine requests and answers for the /v1 endpoints of one served model."""

    def __init__(self, context: ServingContext) -> None:
        self.context = context
        self.model_name = context.model_name

    @property
    def engine(self) -> EngineClient:
        if self.context.engine is None:  # a ChatStream with use_mock_response has no engine
            raise OpenAIError(503, "the OpenAI API needs the engine; this server runs mock responses",
                              type="service_unavailable")
        return self.context.engine

    async def admit(self, disconnect_watch: DisconnectWatch) -> Callable[[], None]:
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

    async def collect(self, job: Job, disconnect_watch: DisconnectWatch) -> Choices:
        """Run `job` to its end (holding a slot) and return its choices; raises `OpenAIError`."""
        release = await self.admit(disconnect_watch)
        choices = job.choices()
        try:
            await unless_disconnected(self._collect(job, choices), disconnect_watch)
        except ClientGone:
            raise
        except Exception as exc:  # noqa: BLE001 - mapped to the HTTP answer
            raise engine_error(exc) from exc
        finally:
            choices.close()
            release()
        return choices

    async def stream(self, job: Job, disconnect_watch: DisconnectWatch, events: EventSource) -> SSEStream:
        """Take a slot and return the stream `events` writes from the job's deltas."""
        release = await self.admit(disconnect_watch)

        async def body() -> AsyncGenerator[str, None]:
            choices = job.choices()
            try:
                async with aclosing(self.deltas(job)) as deltas, aclosing(events(job, choices, deltas)) as out:
                    async for event in out:
                        yield event
            finally:
                choices.close()
                release()

        return SSEStream(body(), release, abort=lambda: self.abort(job))

    def abort(self, job: Job) -> None:
        """Stop every engine request of `job` (idempotent)."""
        for index in range(len(job.prompts) * job.n):
            self.engine.abort(f"{job.id}-{index}")

    def deltas(self, job: Job) -> AsyncGenerator[tuple[int, RequestDelta], None]:
        streams = []
        for k, ids in enumerate(job.prompts):
            for i in range(job.n):
                params = job.params[k]
                if params.seed is not None and i > 0:  # same seed, same sample: shift it per choice
                    params = dataclasses.replace(params, seed=params.seed + i)
                index = k * job.n + i
                streams.append(self.engine.generate(ids, params, request_id=f"{job.id}-{index}"))
        return merge(streams)

    async def _collect(self, job: Job, choices: Choices) -> None:
        async with aclosing(self.deltas(job)) as deltas:
            async for index, delta in deltas:
                choices.add(index, delta)


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


def error_event(exc: BaseException) -> dict[str, Any]:
    """What a stream sends when generation fails after its status line went out."""
    return engine_error(exc).body()
