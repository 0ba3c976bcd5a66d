"""The engine thread and its asyncio face.

`AsyncEngine` owns exactly one thread that drives `EngineCore`. The event loop never runs model
code: `generate()` hands the request to the thread through a locked inbox and then awaits an
`asyncio.Queue` that the thread fills (one `call_soon_threadsafe` per step, with every delta of
that step). Cancellation has one path: when the consumer of `generate()` stops early (client
disconnect, task cancelled, `break`), its `finally` calls `abort(request_id)`, and the thread
frees the request's blocks before its next step.

A failure confined to one request (see `EngineCore`) ends only that request: its `generate()`
raises `RequestFailedError`, the others go on. If a step itself raises (the model's forward pass,
the scheduler: no request's fault), the engine is dead: every waiting `generate()` raises
`EngineDeadError`, new requests are refused, and `dead_reason` says why, so callers can answer 503
(and a health check can show the reason) instead of hanging.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from chatstream.engine.confinement import describe
from chatstream.engine.engine_core import EngineCore
from chatstream.engine.grammar_matcher import GrammarMatcher
from chatstream.engine.openmp_threads import warn_if_throttled
from chatstream.engine.outputs import RequestDelta
from chatstream.engine.sampling_params import SamplingParams
from chatstream.engine.stats import EngineStats
from chatstream.engine.structured_output import StructuredOutput

logger = logging.getLogger("chatstream.engine")


class EngineDeadError(RuntimeError):
    """The engine thread stopped because of an error; no request can be served."""


class RequestFailedError(RuntimeError):
    """This request failed in the engine (the message says why); the engine and other requests go on."""


class RequestObserver(Protocol):
    """Sees each request's timing as its consumer receives it (e.g. Prometheus histograms).

    Called on the event loop: `on_first_token` once with the time to first token, `on_tokens` for
    each later delta with its gap and token count, `on_finish` once with the whole duration and
    the final delta (None when the consumer left before any delta).
    """

    def on_first_token(self, seconds: float) -> None: ...
    def on_tokens(self, seconds: float, num_tokens: int) -> None: ...
    def on_finish(self, seconds: float, delta: RequestDelta | None) -> None: ...


@dataclass
class _Add:
    request_id: str
    prompt_token_ids: list[int]
    params: SamplingParams
    prompt: str | None
    grammar: GrammarMatcher | None = None


class _Stream:
    """Per-request delivery from the engine thread to one `generate()` consumer."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[RequestDelta | BaseException] = asyncio.Queue()


class AsyncEngine:
    """Runs an `EngineCore` in its own thread; `generate()` and `abort()` are safe from asyncio, and
    `stats` is the snapshot the thread published after its latest step (an `EngineClient`)."""

    def __init__(self, core: EngineCore, observer: RequestObserver | None = None) -> None:
        self.core = core
        self.observer = observer
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._inbox_add: list[_Add] = []
        self._inbox_abort: list[str] = []
        self._streams: dict[str, _Stream] = {}
        self._stopping = False
        self.error: BaseException | None = None
        self._stats = EngineStats.of(core)  # the thread does not run yet: this thread may read the core
        self._thread = threading.Thread(target=self._run, name="chatstream-engine", daemon=True)
        self._thread.start()

    # -- status ------------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        return self._thread.is_alive() and self.error is None

    @property
    def dead_reason(self) -> str | None:
        """None while the engine serves; else why it stopped (the error that killed it, or shutdown)."""
        if self.error is not None:
            return f"{type(self.error).__name__}: {self.error}"
        if self._stopping or not self._thread.is_alive():
            return "the engine was shut down"
        return None

    @property
    def tokenizer(self):  # noqa: ANN201 - the HF tokenizer type
        return self.core.tokenizer

    @property
    def max_model_len(self) -> int:
        return self.core.max_model_len

    @property
    def stats(self) -> EngineStats:
        """The engine's numbers after its latest step, published by the engine thread."""
        return self._stats

    @property
    def vocab_size(self) -> int:
        return self.core.vocab_size

    def validate_prompt(self, ids: Sequence[int]) -> None:
        """Raise ValueError unless the engine can serve `ids` (reads only start-up values)."""
        self.core.validate_prompt(ids)

    def validate_params(self, params: SamplingParams) -> None:
        """Raise ValueError unless the engine can honour `params` (e.g. logit_bias ids in the vocabulary)."""
        self.core.validate_params(params)

    async def prepare_grammar(self, spec: StructuredOutput) -> GrammarMatcher:
        """Compile `spec` in a worker thread (cached per spec): never on the event loop, never on the
        engine thread. Raises ValueError when the grammar engine rejects it."""
        return await asyncio.get_running_loop().run_in_executor(None, self.core.grammars.compile, spec)

    # -- asyncio side --------------------------------------------------------------------------
    async def generate(
        self,
        prompt_token_ids: Sequence[int],
        params: SamplingParams | None = None,
        request_id: str | None = None,
        prompt: str | None = None,
    ) -> AsyncIterator[RequestDelta]:
        """Stream the deltas of one request; leaving the iteration early aborts the request."""
        if not self.is_running:
            raise EngineDeadError("the engine is not running") from self.error
        request_id = request_id or uuid.uuid4().hex
        params = params or SamplingParams()
        ids = [int(t) for t in prompt_token_ids]
        self.validate_prompt(ids)  # in the caller, so bad input raises here
        self.validate_params(params)
        grammar = None
        if params.structured_output is not None:  # compiled before the request enters the engine
            grammar = await self.prepare_grammar(params.structured_output)
        stream = _Stream(asyncio.get_running_loop())
        with self._lock:
            if self.error is not None or self._stopping:
                raise EngineDeadError("the engine is not running") from self.error
            if request_id in self._streams:
                raise ValueError(f"request_id {request_id!r} is already in use")
            self._streams[request_id] = stream
            self._inbox_add.append(_Add(request_id, ids, params, prompt, grammar))
            self._wakeup.notify()
        finished = False
        start = last_token_time = time.perf_counter()
        last: RequestDelta | None = None
        try:
            while True:
                item = await stream.queue.get()
                if isinstance(item, BaseException):
                    raise item
                finished = item.finished
                if item.finish_reason == "error":
                    last = item
                    raise RequestFailedError(f"request {request_id!r} failed in the engine: {item.error}")
                if self.observer is not None and item.new_token_ids:
                    now = time.perf_counter()
                    if last_token_time == start:
                        self.observer.on_first_token(now - start)
                    else:
                        self.observer.on_tokens(now - last_token_time, len(item.new_token_ids))
                    last_token_time = now
                last = item
                yield item
                if finished:
                    return
        finally:
            if not finished:
                self.abort(request_id)
            if self.observer is not None:
                self.observer.on_finish(time.perf_counter() - start, last)

    def abort(self, request_id: str) -> None:
        """Ask the engine thread to stop a request and free its blocks (idempotent)."""
        with self._lock:
            self._inbox_abort.append(request_id)
            self._wakeup.notify()

    def shutdown(self, timeout: float | None = 10.0) -> None:
        with self._lock:
            self._stopping = True
            self._wakeup.notify()
        self._thread.join(timeout)

    # -- engine thread -------------------------------------------------------------------------
    def _run(self) -> None:
        core = self.core
        try:
            if core.device.type == "cpu":
                warn_if_throttled()
            while True:
                with self._lock:
                    while not (self._inbox_add or self._inbox_abort or self._stopping
                               or core.has_unfinished_requests()):
                        self._wakeup.wait()
                    if self._stopping:
                        break
                    adds, self._inbox_add = self._inbox_add, []
                    aborts, self._inbox_abort = self._inbox_abort, []
                deltas: list[RequestDelta] = []
                for add in adds:
                    try:
                        core.add_request(add.request_id, add.prompt_token_ids, add.params, add.prompt, add.grammar)
                    except ValueError as exc:  # refused input (e.g. a replay with no recording of it)
                        self._deliver_error(add.request_id, exc)
                    except Exception as exc:  # noqa: BLE001 - this request could not be set up: only it fails
                        logger.error("request %r could not be added", add.request_id, exc_info=exc)
                        failed = RequestFailedError(f"request {add.request_id!r} failed in the engine: {describe(exc)}")
                        failed.__cause__ = exc
                        self._deliver_error(add.request_id, failed)
                for request_id in aborts:
                    delta = core.abort_request(request_id)
                    if delta is not None:
                        deltas.append(delta)
                deltas.extend(core.step())
                # Published before the deltas, so a consumer that sees its last delta sees this step.
                self._stats = EngineStats.of(core)
                self._deliver(deltas)
        except BaseException as exc:  # noqa: BLE001 - any failure kills the engine, loudly
            logger.exception("engine thread died")
            self.error = exc
            dead = EngineDeadError(f"the engine thread died: {exc!r}")
            dead.__cause__ = exc
            self._fail_all(dead)
            return
        self._fail_all(EngineDeadError("the engine was shut down"))

    def _deliver(self, deltas: list[RequestDelta]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Stream, RequestDelta]]] = {}
        with self._lock:
            for delta in deltas:
                stream = self._streams.get(delta.request_id)
                if delta.finished:
                    self._streams.pop(delta.request_id, None)
                if stream is not None:
                    by_loop.setdefault(stream.loop, []).append((stream, delta))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_put_all, items)
            except RuntimeError:
                pass  # the consumer's loop is closed; nobody is listening any more

    def _deliver_error(self, request_id: str, exc: BaseException) -> None:
        with self._lock:
            stream = self._streams.pop(request_id, None)
        if stream is not None:
            self._deliver_error_to(stream, exc)

    def _fail_all(self, exc: BaseException) -> None:
        with self._lock:
            streams, self._streams = list(self._streams.values()), {}
        for stream in streams:
            self._deliver_error_to(stream, exc)

    @staticmethod
    def _deliver_error_to(stream: _Stream, exc: BaseException) -> None:
        try:
            stream.loop.call_soon_threadsafe(stream.queue.put_nowait, exc)
        except RuntimeError:
            pass


def _put_all(items: list[tuple[_Stream, RequestDelta]]) -> None:
    for stream, delta in items:
        stream.queue.put_nowait(delta)
