"""Keeping a failure to the request that caused it.

Owns the rule for the per-request parts of an engine step that run batched (sampling, the
recorder's view of a step): when the batch call raises, each request's part is run again alone,
so only the requests whose own part fails get a `RequestFailure` (a short description) in place
of their result; the step's other requests go on. Everything that is not one request's part
(scheduling, the model's forward pass, freeing blocks) is left to raise: then the engine itself
is broken.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import torch

from chatstream.engine.sampler import NO_TOKEN, Sampler, SamplingRow

if TYPE_CHECKING:
    from chatstream.engine.request import Request
    from chatstream.engine.step_recorder import StepRecorder

logger = logging.getLogger("chatstream.engine")

MAX_ERROR_CHARS = 300  # enough to recognise the failure; the traceback is in the log

T = TypeVar("T")


class RequestFailure:
    """Why one request's part of a step failed (in place of its result)."""

    def __init__(self, message: str) -> None:
        self.message = message

    def __repr__(self) -> str:
        return f"RequestFailure({self.message!r})"


def describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def each_or_failure(
    num_requests: int,
    batch: Callable[[], Sequence[T]],
    alone: Callable[[int], T],
    what: str,
) -> list[T | RequestFailure]:
    """`batch()`, or, when it raises, `alone(i)` for each request i with a failure for those that raise."""
    try:
        return list(batch())
    except Exception as exc:  # noqa: BLE001 - sorted out request by request below
        logger.warning("%s failed for a batch of %d requests (%s); retrying each alone", what, num_requests,
                       describe(exc))
    results: list[T | RequestFailure] = []
    for i in range(num_requests):
        try:
            results.append(alone(i))
        except Exception as exc:  # noqa: BLE001 - this request's own failure
            logger.error("%s failed for one request", what, exc_info=exc)
            results.append(RequestFailure(f"{what} failed: {describe(exc)}"))
    return results


def sample_each(sampler: Sampler, logits: torch.Tensor, rows: Sequence[SamplingRow]) -> list[int | RequestFailure]:
    """One token per row of the step, or why a row has none."""
    tokens = each_or_failure(
        len(rows), lambda: sampler(logits, rows).tolist(),
        lambda i: int(sampler(logits[i:i + 1], rows[i:i + 1])[0]), "sampling")
    # NO_TOKEN: nothing finite in the row's logits (every token blocked, or a broken model output).
    no_token = RequestFailure("sampling failed: no token has a finite logit")
    return [no_token if t == NO_TOKEN else t for t in tokens]


def record_step_each(
    recorder: StepRecorder, requests: Sequence[Request], logits: torch.Tensor, tokens: list[int | RequestFailure]
) -> None:
    """Show the step to `recorder`; a request it fails on gets a failure in place of its token (in `tokens`)."""
    ok = [i for i, t in enumerate(tokens) if not isinstance(t, RequestFailure)]
    if not ok:
        return

    def record_all() -> list[None]:
        picked = logits if len(ok) == len(tokens) else logits[torch.tensor(ok, device=logits.device)]
        recorder.on_step([requests[i] for i in ok], picked, [tokens[i] for i in ok])
        return [None] * len(ok)

    def record_one(j: int) -> None:
        i = ok[j]
        recorder.on_step([requests[i]], logits[i:i + 1], [tokens[i]])

    for j, result in enumerate(each_or_failure(len(ok), record_all, record_one, "recording")):
        if isinstance(result, RequestFailure):
            tokens[ok[j]] = result
