"""The original ChatStream 0.3.0's module path `chatstream.access_control.role_def_to_client_role`, kept so code written for it imports unchanged.

The original's role description (`{client_role_name, allowed_apis, enable_dev_tool}`) is `ClientRoles.describe`.
"""

from chatstream.facade.client_roles import AUTH_HEADER, ClientRoles

__all__ = ["AUTH_HEADER", "ClientRoles"]
