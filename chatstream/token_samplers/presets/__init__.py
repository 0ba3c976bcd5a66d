"""The original ChatStream 0.3.0's module path `chatstream.token_samplers.presets`, kept so code written for it imports unchanged.
"""
