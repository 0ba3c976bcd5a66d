"""The original ChatStream 0.3.0's module path `chatstream.request_handler`, kept so code written for it imports unchanged.

The request handlers live in `chatstream.facade`; these modules re-export them.
"""

from chatstream.facade.request_handler import AbstractRequestHandler
from chatstream.facade.session_request_handler import SimpleSessionRequestHandler

__all__ = ["AbstractRequestHandler", "SimpleSessionRequestHandler"]
