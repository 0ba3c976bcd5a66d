"""The original ChatStream 0.3.0's module path `chatstream.default_api_names`, kept so code written for it imports unchanged.
"""

from chatstream.facade.default_routes import DefaultApiNames

__all__ = ["DefaultApiNames"]
