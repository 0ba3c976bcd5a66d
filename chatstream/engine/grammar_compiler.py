"""Structured outputs' grammar engine: compiling a `StructuredOutput` into a per-request matcher.

We use llguidance (see the README for why): it needs only a fast HF tokenizer, compiles lazily
(an Earley parser over a lexer built on demand, so "compiling" a schema is mostly validating it)
and bounds the work of every mask by its parser limits, so no step of the engine thread can be
held for long by a hostile grammar.

`GrammarCompiler` is one per engine (no module state), safe to call from any thread. `compile`
is the slow, fallible part: it builds llguidance's view of the vocabulary on first use (about a
second for a 50k vocabulary), checks the grammar, and caches the checked matcher per spec (LRU),
so a spec seen before costs one copy. Callers run it off the event loop and before the request
enters the engine (`AsyncEngine.prepare_grammar` / `generate` use a worker thread); a grammar the
engine rejects raises `ValueError` there, naming why, and nothing is queued.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from chatstream.engine.grammar_matcher import GrammarMatcher
from chatstream.engine.structured_output import StructuredOutput

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

DEFAULT_CACHE_SIZE = 256
# One space after ":" and ",", none elsewhere: readable JSON, and no run of whitespace that a
# sampled model could wander into until max_tokens (flexible whitespace allows any amount).
JSON_OPTIONS: dict[str, Any] = {"whitespace_flexible": False, "key_separator": ": ", "item_separator": ", "}


class GrammarCompiler:
    """Compiles and caches grammars for one engine's tokenizer and vocabulary."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase | None, vocab_size: int,
                 eos_token_ids: Iterable[int], cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.eos_token_ids = sorted(eos_token_ids)
        self.cache_size = cache_size
        self._lock = threading.Lock()
        self._ll_tokenizer: Any = None
        self._cache: OrderedDict[StructuredOutput, Any] = OrderedDict()
        self.num_compiled = 0  # cache misses, for tests and the benchmark

    @property
    def is_loaded(self) -> bool:
        """True once the grammar engine's view of the vocabulary exists (the first grammar built it)."""
        return self._ll_tokenizer is not None

    def compile(self, spec: StructuredOutput) -> GrammarMatcher:
        """A fresh matcher for one request; raises ValueError when the grammar engine rejects `spec`."""
        with self._lock:
            template = self._cache.get(spec)
            if template is not None:
                self._cache.move_to_end(spec)
        if template is None:
            template = self._build(spec)
            with self._lock:
                self._cache[spec] = template
                self.num_compiled += 1
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return GrammarMatcher(template.deep_copy(), self.vocab_size)

    def _build(self, spec: StructuredOutput) -> Any:
        import llguidance

        grammar = _grammar_text(spec)
        # The constructor never raises for a bad grammar: the matcher is in an error state instead.
        matcher = llguidance.LLMatcher(self._tokenizer(), grammar, log_level=0)
        if matcher.is_error():
            raise ValueError(f"the grammar engine rejected the {_describe(spec)}: {_first_line(matcher.get_error())}")
        return matcher

    def _tokenizer(self) -> Any:
        with self._lock:
            if self._ll_tokenizer is None:
                self._ll_tokenizer = self._build_tokenizer()
            return self._ll_tokenizer

    def _build_tokenizer(self) -> Any:
        import llguidance.hf
        from transformers import PreTrainedTokenizerFast

        if not isinstance(self.tokenizer, PreTrainedTokenizerFast):
            raise ValueError("structured outputs need the model's fast (tokenizers-backed) tokenizer")
        return llguidance.hf.from_tokenizer(self.tokenizer, n_vocab=self.vocab_size,
                                            eos_token=self.eos_token_ids or None)


def _grammar_text(spec: StructuredOutput) -> str:
    import llguidance
    from llguidance.gbnf_to_lark import any_to_lark

    matcher = llguidance.LLMatcher
    try:
        if spec.kind == "json":
            return matcher.grammar_from_json_schema(spec.value, defaults=JSON_OPTIONS)
        if spec.kind == "json_object":
            return matcher.grammar_from_json_schema({"type": "object"}, defaults=JSON_OPTIONS)
        if spec.kind == "regex":
            return matcher.grammar_from_regex(spec.value)
        if spec.kind == "choice":
            return matcher.grammar_from_lark("start: " + " | ".join(json.dumps(c) for c in spec.choices))
        return matcher.grammar_from_lark(any_to_lark(spec.value))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"the grammar engine rejected the {_describe(spec)}: {_first_line(str(exc))}") from exc


def _describe(spec: StructuredOutput) -> str:
    return {"json": "JSON schema", "json_object": "JSON object format", "regex": "regular expression",
            "choice": "choices", "grammar": "grammar"}[spec.kind]


def _first_line(message: str, limit: int = 300) -> str:
    line = message.strip().splitlines()[0] if message.strip() else "unknown error"
    return line if len(line) <= limit else line[: limit - 3] + "..."
