"""HTTP layer of ChatStream: routes, sessions, access control and the web page."""
