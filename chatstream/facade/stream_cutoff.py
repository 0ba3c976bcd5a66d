"""`StreamCutoff`: ending every streaming answer that is still running, each with a final error.

A server that shuts down (or any owner that must stop its streams) calls `cut(reason)`: every
registered stream stops its generation and ends with its protocol's error (the /chat_stream
error marker, an OpenAI error event) instead of being cut mid-body. Streams find the cutoff in
the ASGI scope under `SCOPE_KEY`, where the server's drain middleware puts it, so the facade
needs no reference to the server; without one (an embedded app), nothing changes.
"""

from __future__ import annotations

from typing import Protocol

from starlette.types import Scope

SCOPE_KEY = "chatstream.stream_cutoff"


class Cuttable(Protocol):
    def cut(self, reason: str) -> None: ...


class StreamCutoff:
    """The streams running now; `cut(reason)` ends them all, and every stream that registers later."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._streams: set[Cuttable] = set()

    @property
    def num_streams(self) -> int:
        return len(self._streams)

    def register(self, stream: Cuttable) -> None:
        self._streams.add(stream)
        if self.reason is not None:
            stream.cut(self.reason)

    def unregister(self, stream: Cuttable) -> None:
        self._streams.discard(stream)

    def cut(self, reason: str) -> None:
        self.reason = reason
        for stream in list(self._streams):
            stream.cut(reason)


def cutoff_of(scope: Scope) -> StreamCutoff | None:
    cutoff = scope.get(SCOPE_KEY)
    return cutoff if isinstance(cutoff, StreamCutoff) else None
