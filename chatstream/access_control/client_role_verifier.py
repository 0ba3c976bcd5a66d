"""The original ChatStream 0.3.0's module path `chatstream.access_control.client_role_verifier`, kept so code written for it imports unchanged.

The original's verifier (allowed or 403) is `ClientRoles.verify` (and `ChatStream.verify_role_for_api`).
"""

from chatstream.facade.client_roles import AUTH_HEADER, ClientRoles

__all__ = ["AUTH_HEADER", "ClientRoles"]
