"""Chat history as OpenAI sends it, and as chat templates read it.

Owns `ChatMessage`: roles `system`, `developer` (OpenAI's newer name for system), `user`,
`assistant` (whose `content` may be null when it carries `tool_calls`) and `tool` (a tool's result,
answering one of those calls by `tool_call_id`). Content is a string or a list of text parts;
any other part (an image, audio) is a 400 naming it. `as_template_message` gives the dict HF chat
templates expect: text content, and tool-call arguments as an object (templates render them with
`tojson`).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field, model_validator

from chatstream.http.openai.wire import WireModel


class TextPart(WireModel):
    type: Literal["text", "input_text", "output_text"]
    text: str


class ToolCallFunction(WireModel):
    name: str
    arguments: str = "{}"


class ToolCall(WireModel):
    id: str = Field("", max_length=256)
    type: Literal["function"] = "function"
    function: ToolCallFunction


class ChatMessage(WireModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _content_where_needed(self) -> ChatMessage:
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError(f"content is required for a {self.role} message"
                             + (" without tool_calls" if self.role == "assistant" else ""))
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        return self

    @property
    def text(self) -> str:
        if self.content is None:
            return ""
        return self.content if isinstance(self.content, str) else "\n".join(p.text for p in self.content)

    def as_template_message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "system" if self.role == "developer" else self.role, "content": self.text}
        if self.name is not None:
            message["name"] = self.name
        if self.tool_calls:
            message["tool_calls"] = [{"id": call.id, "type": "function", "function": {
                "name": call.function.name, "arguments": _arguments(call.function.arguments)}}
                for call in self.tool_calls]
        if self.role == "tool" and self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        return message


def _arguments(text: str) -> Any:
    # Templates render arguments with `tojson`: a JSON string would come out quoted twice.
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
