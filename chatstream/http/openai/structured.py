"""Structured outputs as requests ask for them, turned into the engine's `StructuredOutput`.

OpenAI's `response_format` (`{"type": "json_object"}`, `{"type": "json_schema", "json_schema":
{"name", "schema", "strict"}}`, which `client.chat.completions.parse(response_format=Model)`
sends), vLLM's `structured_outputs` (`json`, `regex`, `choice`, `grammar`, `json_object`) and its
older `guided_json` / `guided_regex` / `guided_choice` / `guided_grammar`. A request may use one
of them; the grammar engine's verdict on it comes later, when it is compiled (a 400 naming the
field it came from).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from chatstream.engine.structured_output import StructuredOutput
from chatstream.http.openai.wire import OpenAIError, RequestModel, WireModel


class JsonSchemaFormat(WireModel):
    name: str | None = None
    description: str | None = None
    schema_: dict[str, Any] | bool | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(WireModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StructuredOutputs(WireModel):
    """vLLM's `structured_outputs` object: exactly one of its fields."""

    json_: dict[str, Any] | str | None = Field(None, alias="json")
    regex: str | None = None
    choice: list[str] | None = None
    grammar: str | None = None
    json_object: bool | None = None


class StructuredFields(RequestModel):
    """The structured-output fields both endpoints accept (mixed into their request models)."""

    response_format: ResponseFormat | None = None
    structured_outputs: StructuredOutputs | None = None
    guided_json: dict[str, Any] | str | None = None
    guided_regex: str | None = None
    guided_choice: list[str] | None = None
    guided_grammar: str | None = None

    def structured_output(self) -> tuple[StructuredOutput | None, str | None]:
        """(the constraint or None, the field it came from); a 400 when several are given or one is malformed."""
        found: list[tuple[StructuredOutput, str]] = []
        try:
            found.extend(self._from_response_format())
            found.extend(self._from_structured_outputs())
            for field, build in (("guided_json", StructuredOutput.json_schema), ("guided_regex", StructuredOutput.regex),
                                 ("guided_choice", StructuredOutput.choice), ("guided_grammar", StructuredOutput.grammar)):
                value = getattr(self, field)
                if value is not None:
                    found.append((build(value), field))  # type: ignore[operator]
        except ValueError as exc:
            raise OpenAIError(400, str(exc), param=self._field_of(exc)) from exc
        if len(found) > 1:
            names = ", ".join(field for _, field in found)
            raise OpenAIError(400, f"give at most one output constraint; this request has {names}", param=found[1][1])
        return found[0] if found else (None, None)

    def _from_response_format(self) -> list[tuple[StructuredOutput, str]]:
        rf = self.response_format
        if rf is None or rf.type == "text":
            return []
        if rf.type == "json_object":
            return [(StructuredOutput.json_object(), "response_format")]
        if rf.json_schema is None or rf.json_schema.schema_ is None:
            raise OpenAIError(400, "response_format.json_schema.schema is required for type json_schema",
                              param="response_format.json_schema.schema")
        return [(StructuredOutput.json_schema(rf.json_schema.schema_), "response_format")]  # type: ignore[arg-type]

    def _from_structured_outputs(self) -> list[tuple[StructuredOutput, str]]:
        so = self.structured_outputs
        if so is None:
            return []
        found = []
        if so.json_ is not None:
            found.append(StructuredOutput.json_schema(so.json_))
        if so.regex is not None:
            found.append(StructuredOutput.regex(so.regex))
        if so.choice is not None:
            found.append(StructuredOutput.choice(so.choice))
        if so.grammar is not None:
            found.append(StructuredOutput.grammar(so.grammar))
        if so.json_object:
            found.append(StructuredOutput.json_object())
        if len(found) != 1:
            raise OpenAIError(400, "structured_outputs must set exactly one of json, regex, choice, grammar, "
                                   "json_object", param="structured_outputs")
        return [(found[0], "structured_outputs")]

    def _field_of(self, exc: ValueError) -> str | None:
        for field in ("response_format", "structured_outputs", "guided_json", "guided_regex", "guided_choice",
                      "guided_grammar"):
            if getattr(self, field) is not None:
                return field
        return None
