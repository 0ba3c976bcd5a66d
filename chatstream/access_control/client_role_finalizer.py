"""The original ChatStream 0.3.0's module path `chatstream.access_control.client_role_finalizer`, kept so code written for it imports unchanged.

The original's finalizer (the role a request ends up with) is `ClientRoles.role_for`.
"""

from chatstream.facade.client_roles import AUTH_HEADER, ClientRoles

__all__ = ["AUTH_HEADER", "ClientRoles"]
