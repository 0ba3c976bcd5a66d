"""The original ChatStream 0.3.0's module path `chatstream.token_samplers.presets.token_sampler_hft`, kept so code written for it imports unchanged.
"""

from chatstream.facade.token_samplers import TokenSamplerHft

__all__ = ["TokenSamplerHft"]
