"""`LLM`: the offline face of the engine: prompts in, finished outputs back, no HTTP, no threads.

`LLM.generate` adds every prompt to an `EngineCore` and steps it in the calling thread until all
are done, so the whole batch shares the model through continuous batching exactly as the server
does.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatstream.engine.builder import build_engine_core
from chatstream.engine.engine_core import EngineCore
from chatstream.engine.outputs import CompletionOutput, RequestOutput
from chatstream.engine.sampling_params import SamplingParams
from chatstream.mock.recorder import RecordTo, attach_recorder
from chatstream.mock.transformer_mock import MockTransformer, ReplayModel, as_replay_model

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

PromptInput = str | Sequence[int]


class LLM:
    """A model served by our engine, for offline batch generation.

    `model`: a local HuggingFace directory, a hub id (where a network is available), an already
    loaded transformers model, or None / "smollm2" for the bundled SmolLM2-135M-Instruct.
    A recording (a `chatstream.mock.MockTransformer`, its `get_model()`, or a recording directory)
    is replayed instead, with no weights; the tokenizer then defaults to the recorded one.
    `record_to`: record every request (True: a new directory under the cache dir; or a directory);
    the directory is `recording_dir`.
    `engine_options`: the fields of `EngineConfig`, plus `dtype`, `device` and `model_impl` ("auto", "native",
    "transformers": what holds the model, see `chatstream.engine.model_impl`) for loading.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | PreTrainedModel | MockTransformer | ReplayModel | None = None,
        tokenizer: str | PreTrainedTokenizerBase | None = None,
        record_to: RecordTo = None,
        **engine_options: Any,
    ) -> None:
        # A recording (MockTransformer, ReplayModel or its directory) brings its own runner: no weights.
        replay = as_replay_model(model)
        self.engine: EngineCore = build_engine_core(replay if replay is not None else model, tokenizer,
                                                    engine_options, owner="LLM")
        self.recording_dir: Path | None = attach_recorder(self.engine, record_to)
        self._ids = itertools.count()

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase | None:
        return self.engine.tokenizer

    def generate(
        self,
        prompts: PromptInput | Sequence[PromptInput],
        sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
        use_tqdm: bool = False,
    ) -> list[RequestOutput]:
        """Generate for every prompt (strings, or token-id lists); one output per prompt, in order.

        With `SamplingParams.logprobs` each output's `logprobs` has one entry per token; with
        `prompt_logprobs` the `RequestOutput` has the prompt's (None for its first token).
        """
        prompt_list = _as_prompt_list(prompts)
        if sampling_params is None or isinstance(sampling_params, SamplingParams):
            params_list = [sampling_params or SamplingParams()] * len(prompt_list)
        else:
            params_list = list(sampling_params)
            if len(params_list) != len(prompt_list):
                raise ValueError(
                    f"sampling_params has {len(params_list)} entries but there are {len(prompt_list)} prompts"
                )
        # Tokenize and validate everything before queueing anything, so one bad prompt does not
        # leave the others half-submitted.
        encoded = [self._encode(p) for p in prompt_list]
        for ids in encoded:
            self.engine.validate_prompt(ids)
        for params in params_list:
            self.engine.validate_params(params)
        results: dict[str, RequestOutput] = {}
        order: list[str] = []
        progress = _progress(len(prompt_list)) if use_tqdm else None
        try:
            # Inside the try: an engine may still refuse a prompt here (a replay that has no
            # recording of it), and the prompts already queued must not stay behind.
            for prompt, ids, params in zip(prompt_list, encoded, params_list):
                request_id = str(next(self._ids))
                self.engine.add_request(request_id, ids, params, prompt if isinstance(prompt, str) else None)
                order.append(request_id)
                results[request_id] = RequestOutput(
                    request_id, prompt if isinstance(prompt, str) else None, list(ids),
                    [CompletionOutput(0, "", [], None)],
                )
            while self.engine.has_unfinished_requests():
                for delta in self.engine.step():
                    out = results[delta.request_id]
                    completion = out.outputs[0]
                    completion.token_ids.extend(delta.new_token_ids)
                    completion.text += delta.new_text
                    if delta.logprobs is not None:
                        completion.logprobs = completion.logprobs or []
                        completion.logprobs.extend(delta.logprobs)
                    if delta.prompt_logprobs is not None:
                        out.prompt_logprobs = delta.prompt_logprobs
                    out.num_cached_tokens = delta.num_cached_tokens
                    if delta.finished:
                        out.finished = True
                        completion.finish_reason = delta.finish_reason
                        completion.stop_reason = delta.stop_reason
                        if progress is not None:
                            progress.update(1)
        except BaseException:
            for request_id in order:
                self.engine.abort_request(request_id)
            raise
        finally:
            if progress is not None:
                progress.close()
        return [results[r] for r in order]

    def _encode(self, prompt: PromptInput) -> list[int]:
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise ValueError("a text prompt needs a tokenizer; pass token ids or a tokenizer")
            return list(self.tokenizer(prompt)["input_ids"])
        return [int(t) for t in prompt]


def _as_prompt_list(prompts: PromptInput | Sequence[PromptInput]) -> list[PromptInput]:
    if isinstance(prompts, str):
        return [prompts]
    items = list(prompts)
    if items and all(isinstance(t, int) for t in items):
        return [items]  # a single prompt given as token ids
    return items


def _progress(total: int):  # noqa: ANN202 - tqdm's type
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="generate", unit="req")
