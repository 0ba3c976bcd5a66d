"""The Transformer Mock's public face, with the original's API: `MockTransformer(dirname)` and its
`get_model()`, `get_tokenizer()`, `get_token_sampler()`.

Owns the objects that stand where a model, a tokenizer and a token sampler would be passed:
`ReplayModel` (the recording plus the per-step wait: a `RunnerSource`, so the engine builder gives
its engine a `ReplayRunner` instead of loading weights), the recorded tokenizer, and
`MockTokenSampler`.
Torch-free: nothing here imports torch until a model's `device` is asked for.

Unlike the original (which stored logits and hashed them to find the sampled token), replay
forces the recorded token at every step, so it needs no token sampler: ChatStream ignores
samplers, and `get_token_sampler()` exists only so the original's wiring keeps working.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatstream.mock.recording import Recording, is_recording_dir

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

    from chatstream.engine.config import EngineConfig
    from chatstream.mock.replay import ReplayRunner


class ReplayModel:
    """What `MockTransformer.get_model()` returns: a recording to replay, not a network.

    The engine never calls it: it asks it for its runner (`step_runner`, the `RunnerSource`
    contract) and keeps it as the object that stands for the model. `eval()`, `to()` and `half()` return it unchanged so code written
    for a real model (the original's examples) runs as is.
    """

    def __init__(self, recording: Recording, wait_sec: float | None = None) -> None:
        if wait_sec is not None and wait_sec < 0:
            raise ValueError(f"wait_sec must be >= 0 or None, got {wait_sec!r}")
        self.recording = recording
        self.wait_sec = wait_sec

    @property
    def name_or_path(self) -> str:
        return self.recording.manifest.model

    @property
    def device(self) -> "torch.device":
        import torch

        return torch.device("cpu")

    @property
    def dtype(self) -> "torch.dtype":
        import torch

        return torch.float32

    def eval(self) -> "ReplayModel":
        return self

    def to(self, *args: Any, **kwargs: Any) -> "ReplayModel":
        return self

    def half(self) -> "ReplayModel":
        return self

    def default_tokenizer(self) -> PreTrainedTokenizerBase:
        """The recorded tokenizer."""
        return self.recording.load_tokenizer()

    def step_runner(self, tokenizer: PreTrainedTokenizerBase | None, config: EngineConfig) -> ReplayRunner:
        from chatstream.mock.replay import ReplayRunner  # torch, only once an engine is built

        return ReplayRunner(self.recording, tokenizer, config, self.wait_sec)

    def __repr__(self) -> str:
        return f"ReplayModel({str(self.recording.path)!r}, {len(self.recording.requests)} requests)"


class MockTokenSampler:
    """Kept for the original's `ChatStream(token_sampler=...)` wiring; replay does not use it.

    The engine's own sampler replays exactly: at every step it is given a row in which only the
    recorded token is possible.
    """

    def do_sample(self, *args: Any, **kwargs: Any) -> int:
        raise NotImplementedError("ChatStream samples in its engine; replay forces the recorded tokens there")


class MockTransformer:
    """A recorded model: `dirname` (absolute, or relative to the working directory), or
    `parent_dir_path/dirname` when `parent_dir_path` is given. `wait_sec` sleeps once per engine
    step, to emulate a model's latency."""

    def __init__(self, dirname: str | os.PathLike[str], parent_dir_path: str | os.PathLike[str] | None = None,
                 wait_sec: float | None = None) -> None:
        self.path = Path(dirname) if parent_dir_path is None else Path(parent_dir_path) / dirname
        self.recording = Recording.load(self.path)
        self.wait_sec = wait_sec
        self._model = ReplayModel(self.recording, wait_sec)
        self._tokenizer: PreTrainedTokenizerBase | None = None

    def get_model(self) -> ReplayModel:
        return self._model

    def get_tokenizer(self) -> "PreTrainedTokenizerBase":
        """The recorded tokenizer (loaded once, from the recording's files only)."""
        if self._tokenizer is None:
            self._tokenizer = self.recording.load_tokenizer()
        return self._tokenizer

    def get_token_sampler(self) -> MockTokenSampler:
        return MockTokenSampler()


def as_replay_model(model: object) -> ReplayModel | None:
    """The `ReplayModel` that `model` names, or None when it is not a recording.

    Accepts a ReplayModel, a MockTransformer, or a path to a recording directory.
    """
    if isinstance(model, ReplayModel):
        return model
    if isinstance(model, MockTransformer):
        return model.get_model()
    if isinstance(model, (str, os.PathLike)) and is_recording_dir(model):
        return ReplayModel(Recording.load(model))
    return None
