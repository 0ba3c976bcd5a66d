"""The original ChatStream 0.3.0's module path `chatstream.data`, kept so code written for it imports unchanged.

The original kept its web page's files here (and its 0.3.0 wheel shipped none). The page is `chatstream.web`:
`/` and `/chatstream.js` from `append_apis`.
"""
