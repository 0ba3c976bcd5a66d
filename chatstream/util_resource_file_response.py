"""The original ChatStream 0.3.0's module path `chatstream.util_resource_file_response`, kept so code written for it imports unchanged.

The original served its page's files with a private helper from here; the page's files are served by
`chatstream.web.page` (through `append_apis`).
"""
