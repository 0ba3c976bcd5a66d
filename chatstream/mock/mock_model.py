"""The original ChatStream 0.3.0's module path `chatstream.mock.mock_model`, kept so code written for it imports unchanged.

`MockModel(dirname, parent_dir_path=None, wait_sec=None)` is the recorded model, as
`MockTransformer(...).get_model()` gives it (a `ReplayModel`).
"""

import os

from chatstream.mock.transformer_mock import MockTransformer, ReplayModel


def MockModel(dirname: str | os.PathLike[str], parent_dir_path: str | os.PathLike[str] | None = None,  # noqa: N802
              wait_sec: float | None = None) -> ReplayModel:
    return MockTransformer(dirname, parent_dir_path, wait_sec).get_model()


__all__ = ["MockModel", "ReplayModel"]
