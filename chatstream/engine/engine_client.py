"""`EngineClient`: the narrow, typed view of a running engine that the floors above may use.

The facade and the servers stream requests through it and read the engine's numbers from its
`stats` snapshot, published by the engine thread after every step; they never reach into the
scheduler, the block manager or the sampler, which belong to the engine thread alone.
`AsyncEngine` is the implementation; unit tests of the layers above pass fakes with the same
shape.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from chatstream.engine.async_engine import RequestObserver
    from chatstream.engine.outputs import RequestDelta
    from chatstream.engine.sampling_params import SamplingParams
    from chatstream.engine.grammar_matcher import GrammarMatcher
    from chatstream.engine.stats import EngineStats
    from chatstream.engine.structured_output import StructuredOutput


class EngineClient(Protocol):
    """What may be used of a running engine from the event loop.

    tokenizer: the engine's tokenizer (None when it was built without one).
    max_model_len: the longest sequence (prompt + output) one request may reach.
    stats: the newest snapshot (`EngineStats`); is_running: False once the engine died or was
        shut down; error: what killed it, if anything; dead_reason: None while it serves, else why
        it stopped, as one line. observer: sees each request's timing.
    vocab_size: the width of the model's logits (valid token ids are below it).
    validate_prompt(ids): raises ValueError unless the engine can serve this prompt.
    validate_params(params): raises ValueError unless the engine can honour these settings.
    prepare_grammar(spec): compile a structured output's grammar in a worker thread (cached), so
        a bad one is refused before anything is queued; raises ValueError naming why.
    generate(...): stream one request's deltas; leaving early aborts it. abort(request_id): stop
        it (idempotent). shutdown(): stop the engine thread.
    """

    observer: RequestObserver | None

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase | None: ...

    @property
    def max_model_len(self) -> int: ...

    @property
    def stats(self) -> EngineStats: ...

    @property
    def is_running(self) -> bool: ...

    @property
    def error(self) -> BaseException | None: ...

    @property
    def dead_reason(self) -> str | None: ...

    @property
    def vocab_size(self) -> int: ...

    def validate_prompt(self, ids: Sequence[int]) -> None: ...

    def validate_params(self, params: SamplingParams) -> None: ...

    async def prepare_grammar(self, spec: StructuredOutput) -> GrammarMatcher: ...

    def generate(self, prompt_token_ids: Sequence[int], params: SamplingParams | None = None,
                 request_id: str | None = None, prompt: str | None = None) -> AsyncIterator[RequestDelta]: ...

    def abort(self, request_id: str) -> None: ...

    def shutdown(self, timeout: float | None = 10.0) -> None: ...
