"""`TurnGate`: where a /chat_stream request waits before its reply runs, and the bounds on waiting.

A request first waits for its conversation's turn (the previous reply of the same conversation
must end: `TurnLocks`), then for a run slot (`Admission`). Both waits are visible and bounded:

- a request that must wait for its conversation holds an `Admission` waiting place meanwhile, so
  it shows in `num_waiting` (/get_load, /metrics) and counts against `max_queue_size`;
- one session keeps at most `max_waiting_per_session` requests waiting for its conversations;
- beyond either bound the request is refused at once (`QueueFull`: 429 with `Retry-After`);
- a client that leaves while it waits (either wait) gives up its place and never opens a turn.
"""

from __future__ import annotations

from starlette.requests import Request

from chatstream.facade.admission import Admission, QueueFull
from chatstream.facade.disconnect import ClientGone, disconnect_watch, unless_disconnected
from chatstream.facade.session_locks import TurnLocks


class TurnGate:
    def __init__(self, admission: Admission, max_waiting_per_session: int | None = None) -> None:
        if max_waiting_per_session is not None and max_waiting_per_session < 0:
            raise ValueError(f"max_waiting_per_session must be >= 0, got {max_waiting_per_session}")
        self.admission = admission
        self.max_waiting_per_session = max_waiting_per_session
        self.locks = TurnLocks()

    async def enter(self, request: Request, key: str | None, owner: str | None) -> bool:
        """Wait for the conversation `key` (owned by `owner`), then for a run slot. True: the request
        holds both (give them back with `leave`); False: the client left while waiting (it holds
        nothing). Raises `QueueFull` when it may not wait."""
        held = not self.locks.try_acquire(key)
        if held:
            try:
                await self._wait_for_turn(request, key, owner)
            except ClientGone:
                return False
        try:
            waiter = self.admission.join_line(held=held)
            if waiter is not None:
                await unless_disconnected(self.admission.wait(waiter), disconnect_watch(request))
        except ClientGone:
            self.locks.release(key)
            return False
        except BaseException:
            self.locks.release(key)
            raise
        return True

    async def _wait_for_turn(self, request: Request, key: str | None, owner: str | None) -> None:
        limit = self.max_waiting_per_session
        if limit is not None and self.locks.num_waiting(owner) >= limit:
            raise QueueFull()
        self.admission.hold_place()
        waiter = self.locks.join(key, owner)  # counted from now on, before anything else runs
        try:
            await unless_disconnected(self.locks.wait(waiter), disconnect_watch(request))
        except BaseException:
            got_it = waiter is not None and waiter.done() and not waiter.cancelled()
            self.locks.leave(key, waiter, owner)
            if got_it:
                self.locks.release(key)  # handed over just as the client left: pass it on
            self.admission.drop_place()
            raise
        self.locks.leave(key, waiter, owner)

    def leave(self, key: str | None) -> None:
        """Give the run slot and the conversation's turn back."""
        self.admission.release()
        self.locks.release(key)
