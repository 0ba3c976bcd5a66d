"""The original ChatStream 0.3.0's module path `chatstream.access_control`, kept so code written for it imports unchanged.

Access control is `chatstream.facade.client_roles.ClientRoles` (validation, a request's role, pass-phrase and
header promotion, the 403 answer, all in one class); the original's helper classes of this package (the wrapper,
verifier, finalizer and the two authorizers) have no counterparts of their own. `ChatStream.client_role_wrapper`
is the role table.
"""
