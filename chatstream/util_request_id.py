"""The original ChatStream 0.3.0's module path `chatstream.util_request_id`, kept so code written for it imports unchanged.

`req_id(request)`: the short id log lines carry (`req_id_` and the end of the session id).
"""

from chatstream.facade.chat_logging import req_id

__all__ = ["req_id"]
