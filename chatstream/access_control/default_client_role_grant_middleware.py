"""The original ChatStream 0.3.0's module path `chatstream.access_control.default_client_role_grant_middleware`, kept so code written for it imports unchanged.
"""

from chatstream.facade.client_roles import CHAT_STREAM_CLIENT_ROLE
from chatstream.facade.default_routes import DefaultClientRoleGrantMiddleware

__all__ = ["CHAT_STREAM_CLIENT_ROLE", "DefaultClientRoleGrantMiddleware"]
