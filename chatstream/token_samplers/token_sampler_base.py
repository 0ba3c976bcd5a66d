"""The original ChatStream 0.3.0's module path `chatstream.token_samplers.token_sampler_base`, kept so code written for it imports unchanged.
"""

from chatstream.facade.token_samplers import TokenSamplerBase

__all__ = ["TokenSamplerBase"]
