"""The original ChatStream 0.3.0's module path `chatstream.mock.mock_transformer`, kept so code written for it imports unchanged.
"""

from chatstream.mock.transformer_mock import MockTransformer

__all__ = ["MockTransformer"]
