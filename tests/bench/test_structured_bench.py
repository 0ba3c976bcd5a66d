"""The structured-output benchmark runs end to end on a tiny model and reports its ratios."""

from __future__ import annotations

from chatstream.bench import structured_bench


def test_the_benchmark_times_both_engines_and_the_constrained_batch(tiny_model_factory):
    _, tokenizer = tiny_model_factory("llama")
    result = structured_bench.run(lambda: tiny_model_factory("llama")[0], tokenizer, batch=2, max_tokens=8,
                                  rounds=1, num_kv_blocks=64)
    assert result.tokens_per_s_never_used > 0 and result.tokens_per_s_loaded > 0
    assert result.ms_per_token_constrained > 0 and result.ms_per_token_unconstrained > 0
    text = structured_bench.report(result, 2)
    assert "ratio loaded / never used" in text and "cost per constrained token" in text
