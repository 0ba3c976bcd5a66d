"""The original ChatStream 0.3.0's module path `chatstream.easy_locale`, kept so code written for it imports unchanged.
"""

from chatstream.facade.log_locale import EasyLocale

__all__ = ["EasyLocale"]
