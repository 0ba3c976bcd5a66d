"""The original ChatStream 0.3.0's module path `chatstream.access_control.client_role_authorizer_for_browser`, kept so code written for it imports unchanged.

The original's browser authorizer (pass-phrase promotion) is `ClientRoles.try_promote`.
"""

from chatstream.facade.client_roles import AUTH_HEADER, ClientRoles

__all__ = ["AUTH_HEADER", "ClientRoles"]
