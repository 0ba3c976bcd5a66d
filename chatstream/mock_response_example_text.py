"""The original ChatStream 0.3.0's module path `chatstream.mock_response_example_text`, kept so code written for it imports unchanged.

The Generator Mock's canned texts: `sample_text_long` (the "long" reply) and `sample_text_array` (the "round"
replies). Ours are our own stories, not the original's.
"""

from chatstream.facade.generator_mock import LONG_REPLY, ROUND_REPLIES

sample_text_long = LONG_REPLY
sample_text_array = list(ROUND_REPLIES)

__all__ = ["sample_text_array", "sample_text_long"]
