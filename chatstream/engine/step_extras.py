"""The per-request extras of an engine step: grammar bitmasks before sampling, log-probs around it.

Each function here serves only the requests that asked (a grammar, `logprobs`, `prompt_logprobs`):
a step whose requests asked for none of them costs one attribute check per request. Each keeps a
failure to its request (a `RequestFailure` in place of its result, as `confinement.py` does for
sampling), so one request's broken grammar never fails the step's others.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from chatstream.engine.confinement import RequestFailure, describe, each_or_failure
from chatstream.engine.grammar_matcher import bitmask_width
from chatstream.engine.logprobs import TokenLogprobs, logprobs_of
from chatstream.engine.request import Request
from chatstream.engine.sampler import Sampler, SamplingRow
from chatstream.engine.step_runner import PromptLogits


def grammar_bitmasks(requests: Sequence[Request]) -> list[torch.Tensor | RequestFailure | None]:
    """Each request's allowed next tokens as a bitmask row (None: it has no grammar)."""
    grammared = [i for i, r in enumerate(requests) if r.grammar is not None]
    masks: list[torch.Tensor | RequestFailure | None] = [None] * len(requests)
    if not grammared:
        return masks
    width = bitmask_width(requests[grammared[0]].grammar.vocab_size)  # type: ignore[union-attr]
    table = torch.zeros((len(grammared), width), dtype=torch.int32)
    for row, i in enumerate(grammared):
        request = requests[i]
        try:
            request.grammar.fill_bitmask(table[row], request.params.stop_token_ids)  # type: ignore[union-attr]
            masks[i] = table[row]
        except Exception as exc:  # noqa: BLE001 - this request's grammar failed: only it ends
            masks[i] = RequestFailure(f"its grammar failed: {describe(exc)}")
    return masks


def prompt_logprobs(parts: Sequence[PromptLogits]) -> dict[Request, RequestFailure]:
    """Add the prompt log-probs of this step's prompt logits to their requests; returns the failures."""
    failed: dict[Request, RequestFailure] = {}
    for request, start, logits in parts:
        try:
            ids = request.prompt_token_ids[start + 1:start + 1 + logits.shape[0]]
            num_top = request.params.prompt_logprobs or 0
            # Chunked: at most the step's token budget of rows at once.
            request.prompt_logprobs.extend(logprobs_of(logits, ids, [num_top] * len(ids)))
        except Exception as exc:  # noqa: BLE001 - confined to this request
            failed[request] = RequestFailure(f"computing its prompt log-probs failed: {describe(exc)}")
    return failed


def output_logprobs(sampler: Sampler, mode: str, logits: torch.Tensor, rows: Sequence[SamplingRow],
                    tokens: Sequence[int | RequestFailure]) -> list[TokenLogprobs | RequestFailure | None]:
    """The sampled token's log-probs for each row that asked (`params.logprobs`), None for the others.

    `mode` "raw" reads the model's logits; "processed" the sampler's adjusted logits (steps 1-3).
    """
    wanted = [i for i, (row, token) in enumerate(zip(rows, tokens))
              if row.params.logprobs is not None and not isinstance(token, RequestFailure)]
    out: list[TokenLogprobs | RequestFailure | None] = [None] * len(rows)
    if not wanted:
        return out

    def compute(picked: list[int]) -> list[TokenLogprobs]:
        part = logits[torch.tensor(picked, device=logits.device)][:, :sampler.vocab_size]
        if mode == "processed":
            part = sampler.adjusted_logits(part, [rows[i] for i in picked])
        return logprobs_of(part, [tokens[i] for i in picked],  # type: ignore[misc]
                           [rows[i].params.logprobs for i in picked])  # type: ignore[misc]

    results = each_or_failure(len(wanted), lambda: compute(wanted), lambda j: compute([wanted[j]])[0],
                              "computing log-probs")
    for i, result in zip(wanted, results):
        out[i] = result
    return out
