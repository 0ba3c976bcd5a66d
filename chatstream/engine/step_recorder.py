"""The engine's recording hook: what a recorder is told about each request and each step.

Owns the `StepRecorder` protocol. `EngineCore.recorder` is None unless recording was asked for,
and every call site checks for None first, so an engine that does not record pays nothing.
All calls come from the one thread that drives the engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch

    from chatstream.engine.request import Request


class StepRecorder(Protocol):
    """Sees every request the engine serves, from arrival to finish.

    on_add: the request was accepted and queued (its prompt and params are final).
    on_step: this step sampled one token for each of `requests`; `logits` is the runner's raw
        float32 `[N, V]` tensor (before penalties, temperature, top-k/top-p), on the model's
        device, and `token_ids` the N sampled ids, in the same order. It is called before the
        tokens are appended to the requests.
    on_finish: the request finished, was aborted or failed (`request.finish_reason` says which);
        the engine forgets it right after.

    A hook that raises fails only the request(s) it was called for (see `confinement.py`): on_add
    refuses the request, on_step is called again for each request alone and fails those it still
    raises for, and an on_finish failure is logged (the reply was complete; its recording is lost).
    """

    def on_add(self, request: "Request") -> None: ...

    def on_step(self, requests: Sequence["Request"], logits: "torch.Tensor", token_ids: Sequence[int]) -> None: ...

    def on_finish(self, request: "Request") -> None: ...
