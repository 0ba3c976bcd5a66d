"""The original ChatStream 0.3.0's module path `chatstream.request_handler.simple_session_request_handler`, kept so code written for it imports unchanged.
"""

from chatstream.facade.session_request_handler import SimpleSessionRequestHandler

__all__ = ["SimpleSessionRequestHandler"]
