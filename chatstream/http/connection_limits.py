"""Connection-level limits of `chatstream serve`: how long a client may take to send a request head.

uvicorn (h11) times out idle keep-alive connections, but not a connection that sends its request
line and headers slowly, or not at all: each such client holds a connection, a socket and its
buffers for as long as it likes ("slowloris"). `header_timeout_protocol(seconds)` is uvicorn's
h11 protocol with a timer armed whenever the connection waits for a request head (on connect,
and when a kept-alive connection starts its next request) and disarmed once the head is
complete; a head that is not complete in time closes the connection. The head's size is bounded
by h11 (`h11_max_incomplete_event_size`, 16 KiB by default: a larger head is a 400); the body's
size and arrival time by `chatstream.facade.request_limits`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

DEFAULT_HEADER_TIMEOUT_SEC = 10.0


class _HeaderTimeoutH11Protocol(H11Protocol):
    header_timeout: float = DEFAULT_HEADER_TIMEOUT_SEC

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state == h11.IDLE:  # still waiting for a complete request head
            self._arm()
        else:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.conn.their_state == h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def header_timeout_protocol(seconds: float = DEFAULT_HEADER_TIMEOUT_SEC) -> type[H11Protocol]:
    """uvicorn's h11 protocol class, closing connections whose request head takes over `seconds`."""
    if seconds <= 0:
        raise ValueError(f"the header timeout must be > 0, got {seconds}")
    return type("HeaderTimeoutH11Protocol", (_HeaderTimeoutH11Protocol,), {"header_timeout": seconds})
