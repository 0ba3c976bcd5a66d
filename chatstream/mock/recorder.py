"""Recording a live engine: the `StepRecorder` that feeds a `RecordingWriter`.

Owns what is kept per request while it runs (its file number, the top-K ids and logits of each
step) and `attach_recorder`, which turns an engine's `record_to` option into a recorder. Each
request's file is written when it finishes, so the recording grows request by request and a
crash loses only the requests still running.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from chatstream.mock.recording import RecordedRequest, RecordingWriter, default_recording_dir

if TYPE_CHECKING:
    import torch

    from chatstream.engine.engine_core import EngineCore
    from chatstream.engine.request import Request

logger = logging.getLogger("chatstream.mock")

RecordTo = str | os.PathLike[str] | bool | None


@dataclass
class _Pending:
    seq: int
    top_ids: list[np.ndarray] = field(default_factory=list)  # one [K] row per step
    top_logits: list[np.ndarray] = field(default_factory=list)


class Recorder:
    """Implements `StepRecorder` over a `RecordingWriter`."""

    def __init__(self, writer: RecordingWriter) -> None:
        self.writer = writer
        self.vocab_size = writer.manifest.vocab_size
        self._pending: dict[Request, _Pending] = {}

    def on_add(self, request: Request) -> None:
        self._pending[request] = _Pending(self.writer.reserve_seq())

    def on_step(self, requests: Sequence[Request], logits: torch.Tensor, token_ids: Sequence[int]) -> None:
        # Columns past vocab_size are padding of the output layer, never a token.
        logits = logits[:, : self.vocab_size]
        k = min(self.writer.top_k, logits.shape[1])
        # top-k where the logits are (one small copy to the host instead of the whole [N, V]).
        values, ids = logits.topk(k, dim=-1)
        values_np = values.float().cpu().numpy()
        ids_np = ids.cpu().numpy().astype(np.int64)
        for i, request in enumerate(requests):
            pending = self._pending.get(request)
            if pending is not None:
                pending.top_ids.append(ids_np[i])
                pending.top_logits.append(values_np[i])

    def on_finish(self, request: Request) -> None:
        pending = self._pending.pop(request, None)
        if pending is None:
            return  # arrived before the recorder was attached
        outputs = request.output_token_ids
        k = min(self.writer.top_k, self.vocab_size)
        if len(pending.top_ids) != len(outputs):
            logger.warning("not recording request %r: %d steps seen for %d tokens",
                           request.request_id, len(pending.top_ids), len(outputs))
            return
        top_ids = np.stack(pending.top_ids) if outputs else np.zeros((0, k), dtype=np.int64)
        top_logits = np.stack(pending.top_logits) if outputs else np.zeros((0, k), dtype=np.float32)
        recorded = RecordedRequest(
            seq=pending.seq, request_id=request.request_id, prompt_token_ids=tuple(request.prompt_token_ids),
            output_token_ids=tuple(outputs), top_ids=top_ids, top_logits=top_logits,
            sampling_params=dataclasses.asdict(request.params), finish_reason=request.finish_reason)
        try:
            self.writer.write_request(recorded)
        except OSError:
            # A full disk must not take the server down with it: the reply is still served.
            logger.exception("could not record request %r into %s", request.request_id, self.writer.path)


def _model_name(model: Any) -> str:
    name = getattr(model, "name_or_path", None) or getattr(getattr(model, "config", None), "_name_or_path", None)
    return str(name or type(model).__name__)


def attach_recorder(core: EngineCore, record_to: RecordTo) -> Path | None:
    """Record every request `core` serves from now on; returns the directory (None when off).

    `record_to`: None or False = off; True = a new `default_recording_dir()`; else a directory
    (created, parents too; an existing recording is continued). Sets `core.recorder` and
    `core.recording_dir`.
    """
    if record_to is None or record_to is False:
        return None
    path = default_recording_dir() if record_to is True else Path(record_to)
    writer = RecordingWriter(path, core.tokenizer, _model_name(core.model), core.vocab_size,
                             sorted(core.eos_token_ids), core.max_model_len)
    core.recorder = Recorder(writer)
    core.recording_dir = writer.path
    logger.info("recording every request to %s", writer.path)
    return writer.path
