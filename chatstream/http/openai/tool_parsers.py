"""Reading tool calls out of a model's text, whole or as it streams.

Two formats, those of the families we verify:
- `hermes`: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, one block per call, as the
  chat templates of Qwen2.5 and Hermes-style models ask for; text before the first block is content.
- `llama3_json`: the whole reply is a JSON object `{"name": ..., "parameters": {...}}` (optionally
  after `<|python_tag|>`, several separated by `;`), as Llama 3.1-3.3 templates ask for; a reply
  that does not start with `{` is plain content.

`ToolCallStream.feed(text)` returns `ToolDelta`s as OpenAI streams them: content text; a call's
header (index, id, name) as soon as its name is complete; then its arguments' JSON text in pieces,
as the model writes it. A small scanner tracks each call object's nesting, strings and keys, so
the arguments are sent exactly as written and no piece is sent that the object's end could still
change. `parse(text)` runs the same stream over a whole reply and keeps the calls whose JSON is
valid; a reply with none keeps its text as content.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Literal

ToolFormat = Literal["hermes", "llama3_json"]
TOOL_FORMATS: tuple[str, ...] = ("hermes", "llama3_json")
HERMES_OPEN, HERMES_CLOSE = "<tool_call>", "</tool_call>"
PYTHON_TAG = "<|python_tag|>"
ARGUMENT_KEYS = ("arguments", "parameters")


@dataclass
class ToolDelta:
    """One streamed piece: `content` text, or a tool call's header (`id`, `name`) or `arguments` text."""

    content: str = ""
    index: int | None = None
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass
class ParsedToolCall:
    id: str
    name: str
    arguments: str  # JSON text


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass
class _CallObject:
    """Scans one call's JSON object character by character: nesting, strings, its top-level keys."""

    index: int
    text: str = ""
    depth: int = 0
    in_string: bool = False
    escape: bool = False
    key: str | None = None  # the top-level key whose value is being read
    reading_key: bool = False
    key_text: str = ""
    value_start: int | None = None
    values: dict[str, str] = field(default_factory=dict)
    id: str = field(default_factory=new_call_id)
    name: str | None = None
    header_sent: bool = False
    sent_arguments: str = ""
    done: bool = False

    def feed(self, chunk: str) -> tuple[str, list[ToolDelta]]:
        """Consume `chunk`; returns (what follows the object's end, the deltas it gave)."""
        deltas: list[ToolDelta] = []
        for i, ch in enumerate(chunk):
            self._step(ch)
            if self.done:
                deltas.extend(self._deltas())
                return chunk[i + 1:], deltas
        deltas.extend(self._deltas())
        return "", deltas

    def _step(self, ch: str) -> None:
        self.text += ch
        if self.in_string:
            if self.escape:
                self.escape = False
            elif ch == "\\":
                self.escape = True
            elif ch == '"':
                self.in_string = False
                self.reading_key = False
            elif self.reading_key:
                self.key_text += ch
            return
        if ch == '"':
            self.in_string = True
            if self.depth == 1 and self.key is None:
                self.reading_key, self.key_text = True, ""
        elif ch in "{[":
            self.depth += 1
        elif ch in "}]":
            self.depth -= 1
            if self.depth == 0:
                self._end_value(len(self.text) - 1)
                self.done = True
        elif ch == ":" and self.depth == 1 and self.key is None:
            self.key, self.value_start = self.key_text, len(self.text)
        elif ch == "," and self.depth == 1:
            self._end_value(len(self.text) - 1)

    def _end_value(self, end: int) -> None:
        if self.key is not None and self.value_start is not None:
            self.values[self.key] = self.text[self.value_start:end].strip()
            if self.key == "name" and self.name is None:
                try:
                    name = json.loads(self.values["name"])
                except json.JSONDecodeError:
                    name = None
                self.name = name if isinstance(name, str) else None
        self.key, self.value_start = None, None

    def _arguments_so_far(self) -> str:
        key = next((k for k in ARGUMENT_KEYS if k in self.values), None)
        if key is not None:
            return self.values[key]
        if self.key in ARGUMENT_KEYS and self.value_start is not None:
            return self.text[self.value_start:].strip()  # trailing whitespace waits for what follows
        return ""

    def _deltas(self) -> list[ToolDelta]:
        if self.name is None:
            return []
        deltas = []
        if not self.header_sent:
            deltas.append(ToolDelta(index=self.index, id=self.id, name=self.name))
            self.header_sent = True
        arguments = self._arguments_so_far()
        if self.done and not arguments and not any(k in self.values for k in ARGUMENT_KEYS):
            arguments = "{}"  # a call without arguments
        if arguments.startswith(self.sent_arguments) and len(arguments) > len(self.sent_arguments):
            deltas.append(ToolDelta(index=self.index, arguments=arguments[len(self.sent_arguments):]))
            self.sent_arguments = arguments
        return deltas

    def parsed(self) -> ParsedToolCall | None:
        """The call, when its object is complete, valid JSON, and has a name."""
        if not self.done or self.name is None:
            return None
        try:
            obj = json.loads(self.text)
        except json.JSONDecodeError:
            return None
        arguments = next((obj[k] for k in ARGUMENT_KEYS if k in obj), {})
        if not isinstance(obj, dict) or not isinstance(arguments, dict):
            return None
        return ParsedToolCall(self.id, self.name, self.sent_arguments or json.dumps(arguments, ensure_ascii=False))


class ToolCallStream:
    """Incremental tool-call parsing of one reply in one format."""

    def __init__(self, format: ToolFormat) -> None:
        if format not in TOOL_FORMATS:
            raise ValueError(f"unknown tool-call format {format!r}")
        self.format = format
        self.calls: list[_CallObject] = []
        self._pending = ""  # text not yet placed: a possible tag start, or the start of a llama3 reply
        self._current: _CallObject | None = None
        self._mode: Literal["undecided", "content", "calls", "after"] = \
            "undecided" if format == "llama3_json" else "content"
        self.content = ""
        self._text = ""  # everything fed

    def feed(self, text: str) -> list[ToolDelta]:
        self._text += text
        self._pending += text
        deltas: list[ToolDelta] = []
        while self._pending:
            before = (self._pending, self._mode, self._current)
            deltas.extend(self._advance())
            if (self._pending, self._mode, self._current) == before:
                break  # waiting for more text
        return deltas

    def finish(self) -> list[ToolDelta]:
        """The reply ended. When it held no call after all (text that only looked like one), all
        of it not yet sent is content."""
        self._pending = ""
        if any(call.header_sent for call in self.calls):
            return []
        rest = self._text[len(self.content):]  # content so far is always a prefix of the text
        return [self._content(rest)] if rest else []

    def _advance(self) -> list[ToolDelta]:
        if self._current is not None:
            rest, deltas = self._current.feed(self._pending)
            self._pending = rest
            if self._current.done:
                self._current = None
                self._mode = "after"
            return deltas
        return self._hermes() if self.format == "hermes" else self._llama3()

    def _hermes(self) -> list[ToolDelta]:
        text = self._pending
        if self._mode == "after":  # expect the close tag, then maybe another call
            end = text.find(HERMES_CLOSE)
            if end < 0:
                if len(text) > len(HERMES_CLOSE) + 8:  # no close tag: whatever it is, it is not content
                    self._pending = text[-len(HERMES_CLOSE):]
                return []
            self._pending, self._mode = text[end + len(HERMES_CLOSE):], "content"
            return []
        if self._mode == "calls":  # after the open tag: the object starts at "{"
            start = text.find("{")
            if start < 0:
                self._pending = "" if text.strip() == "" else text
                return []
            self._open_call()
            self._pending = text[start:]
            return []
        start = text.find(HERMES_OPEN)
        if start >= 0:
            deltas = [self._content(text[:start])] if text[:start] and not self.calls else []
            self._pending, self._mode = text[start + len(HERMES_OPEN):], "calls"
            return deltas
        keep = _partial_suffix(text, HERMES_OPEN)
        emit, self._pending = text[:len(text) - keep], text[len(text) - keep:]
        if self.calls and not emit.strip():
            return []  # whitespace between calls
        return [self._content(emit)] if emit else []

    def _llama3(self) -> list[ToolDelta]:
        text = self._pending
        if self._mode == "content":
            self._pending = ""
            return [self._content(text)]
        stripped = text.lstrip()
        if self._mode == "undecided":
            if not stripped or PYTHON_TAG.startswith(stripped):
                return []  # nothing telling yet
            if stripped.startswith(PYTHON_TAG):
                stripped = stripped[len(PYTHON_TAG):].lstrip()
                if not stripped:
                    self._pending = ""
                    self._mode = "calls"
                    return []
            self._mode = "calls" if stripped.startswith("{") else "content"
            self._pending = stripped if self._mode == "calls" else text
            return []
        stripped = stripped.lstrip(";").lstrip() if self._mode == "after" else stripped
        if not stripped:
            self._pending = ""
            return []
        if stripped.startswith("{"):
            self._open_call()
            self._pending = stripped
            return []
        self._pending = ""  # text after the calls is not part of any call: dropped, as it is no content
        return []

    def _open_call(self) -> None:
        self._current = _CallObject(len(self.calls))
        self.calls.append(self._current)

    def _content(self, text: str) -> ToolDelta:
        self.content += text
        return ToolDelta(content=text)


def _partial_suffix(text: str, tag: str) -> int:
    """How many trailing characters of `text` could begin `tag` (held back until the next text)."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0


def parse_tool_calls(text: str, format: ToolFormat) -> tuple[str | None, list[ParsedToolCall]]:
    """(content, calls) of a whole reply; content is None when only calls were written."""
    stream = ToolCallStream(format)
    stream.feed(text)
    stream.finish()
    calls = [call for call in (c.parsed() for c in stream.calls) if call is not None]
    if not calls:
        return text, []
    content = stream.content.strip()
    return content or None, calls
