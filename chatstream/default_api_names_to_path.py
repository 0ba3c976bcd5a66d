"""The original ChatStream 0.3.0's module path `chatstream.default_api_names_to_path`, kept so code written for it imports unchanged.
"""

from chatstream.facade.default_routes import to_web_api_path

__all__ = ["to_web_api_path"]
