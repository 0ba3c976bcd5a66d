"""The original ChatStream 0.3.0's module path `chatstream.request_handler.request_handler`, kept so code written for it imports unchanged.
"""

from chatstream.facade.request_handler import AbstractRequestHandler

__all__ = ["AbstractRequestHandler"]
