"""Tool calling as a chat request asks for it: `tools`, `tool_choice`, `parallel_tool_calls`.

Owns the request models of tools and `ToolPlan`, what one request's tools mean for serving: the
tools handed to the model's own chat template (`tools=` of `apply_chat_template`), the format its
template teaches the model (`hermes` when the template speaks of `<tool_call>`, `llama3_json` when
it asks for a JSON object with "parameters"), whether replies are parsed for calls (not under
`tool_choice: "none"`), and, for `required` or a named function, the grammar that makes the reply
a valid call in that format (so it always parses).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from chatstream.engine.structured_output import StructuredOutput
from chatstream.http.openai.tool_parsers import HERMES_CLOSE, HERMES_OPEN, ToolFormat
from chatstream.http.openai.wire import OpenAIError, WireModel

# The whitespace inside a forced call, as in structured outputs: fixed, so no run of it can
# take a sampled model's remaining tokens.
_COMPACT = {"whitespace_flexible": False, "key_separator": ": ", "item_separator": ", "}


class FunctionDefinition(WireModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDefinition(WireModel):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(WireModel):
    name: str


class NamedToolChoice(WireModel):
    type: Literal["function"]
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


def tool_format_of(chat_template: str | None) -> ToolFormat | None:
    """The tool-call format a chat template teaches its model, or None when it takes no tools."""
    if not chat_template or "tools" not in chat_template:
        return None
    if HERMES_OPEN in chat_template:
        return "hermes"
    if "parameters" in chat_template:
        return "llama3_json"
    return None


@dataclass(frozen=True)
class ToolPlan:
    tools: tuple[ToolDefinition, ...]
    choice: str  # "none", "auto", "required", or the name of the function to call
    parallel: bool
    format: ToolFormat

    @property
    def parses_calls(self) -> bool:
        return self.choice != "none"

    @property
    def is_named(self) -> bool:
        return self.choice not in ("none", "auto", "required")

    def template_tools(self) -> list[dict[str, Any]]:
        return [{"type": "function", "function": tool.function.model_dump(exclude_none=True)} for tool in self.tools]

    def grammar(self) -> StructuredOutput | None:
        """The grammar that forces a call (`required` or a named function); None otherwise."""
        if self.choice in ("none", "auto"):
            return None
        tools = [t for t in self.tools if not self.is_named or t.function.name == self.choice]
        arguments_key = "arguments" if self.format == "hermes" else "parameters"
        calls = [{"type": "object", "properties": {
            "name": {"const": t.function.name},
            arguments_key: t.function.parameters or {"type": "object", "properties": {}, "additionalProperties": False}},
            "required": ["name", arguments_key], "additionalProperties": False} for t in tools]
        schema = {"anyOf": calls, "x-guidance": _COMPACT} if len(calls) > 1 else {**calls[0], "x-guidance": _COMPACT}
        call = f"%json {json.dumps(schema)}"
        repeat = self.parallel and not self.is_named
        if self.format == "hermes":
            one = f'"{HERMES_OPEN}\\n" {call} "\\n{HERMES_CLOSE}"'
            return StructuredOutput.grammar(f'start: call ("\\n" call)*\ncall: {one}' if repeat else f"start: {one}")
        return StructuredOutput.grammar(f'start: call ("; " call)*\ncall: {call}' if repeat else f"start: {call}")


def plan_tools(tools: list[ToolDefinition] | None, tool_choice: ToolChoice | None, parallel: bool | None,
               chat_template: str | None) -> ToolPlan | None:
    """The request's `ToolPlan` (None without tools); a 400 naming the field for what cannot be served."""
    if not tools:
        if tool_choice is not None and tool_choice != "none":
            raise OpenAIError(400, "tool_choice is only allowed when tools are specified", param="tool_choice")
        return None
    names = [t.function.name for t in tools]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise OpenAIError(400, f"tools: the function name {duplicate!r} is given twice", param="tools")
    for i, tool in enumerate(tools):
        parameters = tool.function.parameters
        if parameters is not None and parameters.get("type", "object") != "object":
            raise OpenAIError(400, f"tools.{i}.function.parameters must be a JSON schema of type object",
                              param=f"tools.{i}.function.parameters")
    choice = "auto" if tool_choice is None else tool_choice
    if isinstance(choice, NamedToolChoice):
        if choice.function.name not in names:
            raise OpenAIError(400, f"tool_choice names the function {choice.function.name!r}, which is not "
                                   f"among the tools ({', '.join(names)})", param="tool_choice")
        choice = choice.function.name
    format = tool_format_of(chat_template)
    if format is None:
        raise OpenAIError(400, "tools: the served model's chat template takes no tools (it neither renders a "
                               "`tools` list in a known tool-call format)", param="tools")
    return ToolPlan(tuple(tools), choice, True if parallel is None else parallel, format)
