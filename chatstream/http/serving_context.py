"""`ServingContext`: what the /chat_stream path and the OpenAI path of one server share.

Both APIs serve one model through one engine and one admission bound, so `--num-concurrent` and
`--max-queue` bound the whole server. The context is built once the model is loaded and is fixed
from then on; routes reach it per request through `ServerState.serving`. It holds the engine only
as an `EngineClient`, the narrow typed view (stats snapshot, `max_model_len`, `validate_prompt`,
the tokenizer, `generate`/`abort`), never the engine's internals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from chatstream.engine.engine_client import EngineClient
    from chatstream.facade.admission import Admission
    from chatstream.facade.chat_stream import ChatStream
    from chatstream.facade.offload import Offload


class QueueTimeObserver(Protocol):
    """Sees how long each request waited for a run slot (`chatstream.http.metrics.Metrics` is one)."""

    def observe_queue_time(self, seconds: float) -> None: ...


@dataclass(frozen=True)
class ServingContext:
    """One loaded model as the servers see it.

    model_name: the id clients name it by (/v1/models). engine: None when the ChatStream serves
    mock responses (the OpenAI API then answers 503). admission: the one bound for both APIs;
    a full line is a 429 with `Retry-After: retry_after_sec`. chat_stream: serves /chat_stream
    and the other default APIs (None when only the OpenAI path is served, as in its unit tests).
    """

    model_name: str
    engine: EngineClient | None
    tokenizer: PreTrainedTokenizerBase | None
    admission: Admission
    retry_after_sec: int
    chat_stream: ChatStream | None = None
    metrics: QueueTimeObserver | None = None
    offload: Offload | None = None  # where big prompts are tokenized (None: inline)

    @classmethod
    def of(cls, chat_stream: ChatStream, model_name: str,
           metrics: QueueTimeObserver | None = None) -> ServingContext:
        return cls(model_name=model_name, engine=chat_stream.engine, tokenizer=chat_stream.tokenizer,
                   admission=chat_stream.admission, retry_after_sec=chat_stream.retry_after_sec,
                   chat_stream=chat_stream, metrics=metrics, offload=chat_stream.offload)

    @property
    def is_ready(self) -> bool:
        """False once the engine died (a mock ChatStream has none and is always ready)."""
        return self.engine is None or self.engine.is_running

    @property
    def engine_error(self) -> BaseException | None:
        return None if self.engine is None else self.engine.error

    @property
    def dead_reason(self) -> str | None:
        """None while the engine serves; else why it stopped, in one line."""
        return None if self.engine is None else self.engine.dead_reason
