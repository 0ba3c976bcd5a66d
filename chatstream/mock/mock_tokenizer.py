"""The original ChatStream 0.3.0's module path `chatstream.mock.mock_tokenizer`, kept so code written for it imports unchanged.

`MockTokenizer(dirname, parent_dir_path=None)` is the recorded tokenizer, as `MockTransformer(...).get_tokenizer()`
gives it (a real HF tokenizer loaded from the recording's files).
"""

import os
from typing import Any

from chatstream.mock.transformer_mock import MockTransformer


def MockTokenizer(dirname: str | os.PathLike[str], parent_dir_path: str | os.PathLike[str] | None = None) -> Any:  # noqa: N802
    return MockTransformer(dirname, parent_dir_path).get_tokenizer()


__all__ = ["MockTokenizer"]
