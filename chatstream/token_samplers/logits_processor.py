"""The original ChatStream 0.3.0's module path `chatstream.token_samplers.logits_processor`, kept so code written for it imports unchanged.

The original sampled each request alone through a pipeline of logits processors (`TokenSamplerBuilder`, the
processors and samplers of this package). Sampling here runs batched in the engine (`chatstream.engine.sampler`),
in one order (penalties, temperature, top-k, top-p, min-p); the presets (`chatstream.token_samplers.presets`)
choose among its settings. The pipeline classes have no counterparts.
"""
