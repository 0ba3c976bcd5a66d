"""The original ChatStream 0.3.0's module path `chatstream.chat_process_mock`, kept so code written for it imports unchanged.

`ChatGeneratorMock` is the Generator Mock (`MockChatGenerator`).
"""

from chatstream.facade.generator_mock import MockChatGenerator

ChatGeneratorMock = MockChatGenerator

__all__ = ["ChatGeneratorMock", "MockChatGenerator"]
