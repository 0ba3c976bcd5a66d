"""The original ChatStream 0.3.0's module path `chatstream.mock.mock_token_sampler`, kept so code written for it imports unchanged.
"""

from chatstream.mock.transformer_mock import MockTokenSampler

__all__ = ["MockTokenSampler"]
