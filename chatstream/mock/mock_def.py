"""The original ChatStream 0.3.0's module path `chatstream.mock.mock_def`, kept so code written for it imports unchanged.

The original's one setting here chose how its recordings stored logits; recordings here have one format
(`chatstream.mock.recording`).
"""
