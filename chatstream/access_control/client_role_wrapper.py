"""The original ChatStream 0.3.0's module path `chatstream.access_control.client_role_wrapper`, kept so code written for it imports unchanged.

The original's wrapper (the validated role table) is `ClientRoles`; `ChatStream.client_role_wrapper` is it.
"""

from chatstream.facade.client_roles import AUTH_HEADER, ClientRoles

__all__ = ["AUTH_HEADER", "ClientRoles"]
