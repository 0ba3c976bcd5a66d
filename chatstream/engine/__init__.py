"""Floor 1: the engine. Token ids and `SamplingParams` in, token-id deltas and a finish reason
out: continuous batching over a paged KV cache, prefix caching, the sampler, incremental
detokenization and stop strings, the engine thread (`AsyncEngine`) and the one engine builder.

It imports nothing above it (no facade, server, chat prompts or plug-ins): a model that brings
its own step runner (the Transformer Mock's replay) is recognised by the `RunnerSource`
protocol, and recording is the `StepRecorder` hook.
"""
