"""What a request's output must match: the `StructuredOutput` spec a caller puts in `SamplingParams`.

This module owns the spec only: plain, hashable data (so equal specs share one compiled grammar in
the `GrammarCompiler`'s cache) and its shape checks. Whether the grammar itself is valid is the
grammar engine's call, made when it is compiled (`grammar_compiler.py`), before the request is
queued.

Kinds:
- `json`: `value` is a JSON schema (as JSON text); the output is JSON valid against it.
- `json_object`: any JSON object (`value` is ignored).
- `regex`: `value` is a regular expression the whole output matches.
- `choice`: `choices` are the only outputs allowed.
- `grammar`: `value` is a context-free grammar in Lark or GBNF syntax (llguidance's dialect of
  Lark, which can embed JSON schemas with `%json { ... }`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

StructuredKind = Literal["json", "json_object", "regex", "choice", "grammar"]
STRUCTURED_KINDS: tuple[str, ...] = ("json", "json_object", "regex", "choice", "grammar")

# A grammar's text is compiled and matched on every step of its request: bound its size.
MAX_GRAMMAR_CHARS = 200_000
MAX_CHOICES = 1024


@dataclass(frozen=True)
class StructuredOutput:
    """One output constraint. Build it with the class methods, which normalise the value."""

    kind: StructuredKind
    value: str = ""
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.choices, tuple):  # a list would make the spec unhashable
            object.__setattr__(self, "choices", tuple(self.choices))
        if self.kind not in STRUCTURED_KINDS:
            raise ValueError(f"structured_output kind must be one of {', '.join(STRUCTURED_KINDS)}, got {self.kind!r}")
        if not isinstance(self.value, str) or len(self.value) > MAX_GRAMMAR_CHARS:
            raise ValueError(f"structured_output {self.kind} must be a text of at most {MAX_GRAMMAR_CHARS} characters")
        if self.kind in ("regex", "grammar") and not self.value.strip():
            raise ValueError(f"structured_output {self.kind} must not be empty")
        if self.kind == "choice":
            if not self.choices or len(self.choices) > MAX_CHOICES or not all(
                    isinstance(c, str) and c for c in self.choices):
                raise ValueError(f"structured_output choice must be 1 to {MAX_CHOICES} non-empty strings")

    @classmethod
    def json_schema(cls, schema: dict[str, Any] | str) -> StructuredOutput:
        """Output valid JSON for `schema` (a dict, or its JSON text)."""
        if isinstance(schema, str):
            try:
                schema = json.loads(schema)
            except json.JSONDecodeError as exc:
                raise ValueError(f"the JSON schema is not valid JSON: {exc}") from exc
        if not isinstance(schema, (dict, bool)):
            raise ValueError("a JSON schema must be an object")
        # Sorted keys: the same schema written in another key order shares one compiled grammar.
        return cls("json", json.dumps(schema, sort_keys=True, ensure_ascii=False))

    @classmethod
    def json_object(cls) -> StructuredOutput:
        return cls("json_object")

    @classmethod
    def regex(cls, pattern: str) -> StructuredOutput:
        return cls("regex", pattern)

    @classmethod
    def choice(cls, choices: list[str] | tuple[str, ...]) -> StructuredOutput:
        return cls("choice", choices=tuple(choices))

    @classmethod
    def grammar(cls, text: str) -> StructuredOutput:
        return cls("grammar", text)
