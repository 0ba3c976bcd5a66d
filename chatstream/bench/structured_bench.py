"""What structured outputs cost: `python -m chatstream.bench.structured_bench [--model smollm2]`.

Owns the grammar engine's speed check, in one run on one machine:
1. Unconstrained throughput of an engine whose grammar engine was never used, against the same
   model in a second engine whose grammar engine is loaded and warm (it has compiled a schema and
   served constrained requests), timed in turns A, B, A, B, ... so a busy machine hurts both
   alike. Requests without a grammar should pay nothing: the ratio should be 1 within noise.
2. The cost per constrained token: the same batch under a JSON schema, as extra milliseconds per
   token over the unconstrained batch (the grammar's bitmask, its masking step and its advance).
Throughput is generated tokens per CPU second of this process (all its threads) in
`LLM.generate` (greedy): on a machine shared with other work, wall-clock time mostly measures the
others, while the CPU time this process spends is what the grammar engine could add to.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from typing import Any

from chatstream.engine.sampling_params import SamplingParams
from chatstream.engine.structured_output import StructuredOutput
from chatstream.facade.llm import LLM

SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 40},
    "kind": {"enum": ["city", "person", "thing"]},
    "facts": {"type": "array", "maxItems": 6, "items": {"type": "string", "maxLength": 40}}},
    "required": ["name", "kind", "facts"], "additionalProperties": False}
PROMPT = "Write a JSON record about a famous city, with its name, its kind and some facts about it."


@dataclass
class Result:
    tokens_per_s_never_used: float
    tokens_per_s_loaded: float
    ms_per_token_unconstrained: float
    ms_per_token_constrained: float

    @property
    def loaded_ratio(self) -> float:
        return self.tokens_per_s_loaded / self.tokens_per_s_never_used

    @property
    def extra_ms_per_constrained_token(self) -> float:
        return self.ms_per_token_constrained - self.ms_per_token_unconstrained


def _timed(llm: LLM, prompts: list[Any], params: SamplingParams) -> tuple[float, int]:
    start = time.process_time()
    outputs = llm.generate(prompts, params)
    elapsed = time.process_time() - start
    return elapsed, sum(len(out.outputs[0].token_ids) for out in outputs)


def run(model: Any = "smollm2", tokenizer: Any = None, batch: int = 8, max_tokens: int = 64,
        rounds: int = 3, **engine_options: Any) -> Result:
    """Time both engines in turns; `model` / `tokenizer` as `LLM` takes them (two fresh copies)."""
    never_used = LLM(model() if callable(model) else model, tokenizer, **engine_options)
    loaded = LLM(model() if callable(model) else model, tokenizer, **engine_options)
    tok = never_used.tokenizer
    prompt = tok.apply_chat_template([{"role": "user", "content": PROMPT}], tokenize=False,
                                     add_generation_prompt=True) if getattr(tok, "chat_template", None) else PROMPT
    prompts = [prompt] * batch
    free = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
    schema = StructuredOutput.json_schema(SCHEMA)
    constrained = SamplingParams(max_tokens=max_tokens * 4, temperature=0.0, structured_output=schema)
    for llm in (never_used, loaded):  # warm-up: first-call kernels and caches
        llm.generate(prompts[:1], SamplingParams(max_tokens=4, temperature=0.0, ignore_eos=True))
    loaded.generate(prompts[:1], constrained)  # loads llguidance, builds its vocabulary view, compiles
    assert loaded.engine.grammars.is_loaded and not never_used.engine.grammars.is_loaded
    rates: dict[str, list[float]] = {"never": [], "loaded": [], "constrained_ms": [], "free_ms": []}
    for _ in range(rounds):
        for name, llm in (("never", never_used), ("loaded", loaded)):
            elapsed, tokens = _timed(llm, prompts, free)
            rates[name].append(tokens / elapsed)
            if name == "loaded":
                rates["free_ms"].append(1000 * elapsed / tokens)
        elapsed, tokens = _timed(loaded, prompts, constrained)
        rates["constrained_ms"].append(1000 * elapsed / tokens)
    assert not never_used.engine.grammars.is_loaded  # it really never used the grammar engine
    return Result(statistics.median(rates["never"]), statistics.median(rates["loaded"]),
                  statistics.median(rates["free_ms"]), statistics.median(rates["constrained_ms"]))


def report(result: Result, batch: int) -> str:
    return "\n".join([
        f"unconstrained, grammar engine never used : {result.tokens_per_s_never_used:9.1f} tok/CPU-s",
        f"unconstrained, grammar engine loaded     : {result.tokens_per_s_loaded:9.1f} tok/CPU-s",
        f"ratio loaded / never used                : {result.loaded_ratio:9.3f}",
        f"per token, {batch} seqs unconstrained      : {result.ms_per_token_unconstrained:9.3f} CPU ms",
        f"per token, {batch} seqs json_schema        : {result.ms_per_token_constrained:9.3f} CPU ms",
        f"cost per constrained token               : {result.extra_ms_per_constrained_token:+9.3f} CPU ms "
        f"(x{result.ms_per_token_constrained / result.ms_per_token_unconstrained:.2f})",
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    result = run(args.model, batch=args.batch, max_tokens=args.max_tokens, rounds=args.rounds)
    print(report(result, args.batch))


if __name__ == "__main__":
    main()
