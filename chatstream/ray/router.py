"""`ReplicaRouter`: which replica serves a request, in order of preference.

The rule, first match wins (the ingress tries the next replica in the order only when one
answers 429 or cannot be reached):

1. **A conversation** (`/chat_stream` with `conversation_id`, or an original client's session
   cookie, which names its current conversation): the replica that served its last turn, else
   the one rendezvous hashing of the key picks among live replicas. Every turn then finds its
   earlier turns in that replica's prefix cache. Rendezvous (highest-random-weight) hashing is
   consistent: a replica that dies moves only its own keys, and two ingresses agree without
   talking.
2. **A stateless chat** (`/v1/chat/completions`): the replica that served the longest prefix of
   the request's messages (a client that sends the conversation again reaches the replica that
   holds it in cache), else the least loaded one. The ingress indexes the chained hashes of the
   message prefixes it routed; it does not ask the replicas, so a prefix evicted there still
   attracts its client, which costs one cache miss and no error.
3. **Anything else**: the least loaded live replica (fewest requests in flight from here).

What was learned (conversation or session -> replica, message prefix -> replica) is kept in
bounded LRU maps, so memory does not grow with traffic.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RouteKey:
    """What a request says about where its cache is: a conversation or session key, or the
    chained hashes of its message prefixes (shortest first)."""

    sticky: str | None = None
    prefix_hashes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Route:
    """The replicas to try, best first, and which rule chose the first."""

    replicas: tuple[str, ...]
    rule: str


class _Lru(OrderedDict[str, str]):
    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity

    def remember(self, key: str, value: str) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.capacity:
            self.popitem(last=False)


def rendezvous_order(key: str, names: Sequence[str]) -> list[str]:
    """`names` by descending hash weight of (key, name): the first is the key's home."""
    def weight(name: str) -> int:
        return int.from_bytes(hashlib.blake2b(f"{key}\x00{name}".encode(), digest_size=8).digest(), "big")

    return sorted(names, key=weight, reverse=True)


@dataclass
class ReplicaRouter:
    """Routes over `names`; `mark_up` / `mark_down` come from the ingress's probe and failures."""

    names: tuple[str, ...]
    capacity: int = 100_000
    _up: set[str] = field(default_factory=set)
    _in_flight: dict[str, int] = field(default_factory=dict)
    _sticky: _Lru = field(init=False)
    _prefixes: _Lru = field(init=False)

    def __post_init__(self) -> None:
        self._sticky = _Lru(self.capacity)
        self._prefixes = _Lru(self.capacity)
        self._in_flight = {name: 0 for name in self.names}

    # -- liveness and load ------------------------------------------------------------------------
    def mark_up(self, name: str) -> None:
        self._up.add(name)

    def mark_down(self, name: str) -> None:
        self._up.discard(name)

    def is_up(self, name: str) -> bool:
        return name in self._up

    @property
    def live(self) -> list[str]:
        return [name for name in self.names if name in self._up]

    def started(self, name: str) -> None:
        self._in_flight[name] += 1

    def ended(self, name: str) -> None:
        self._in_flight[name] -= 1

    def in_flight(self, name: str) -> int:
        return self._in_flight[name]

    def _least_loaded(self, names: Sequence[str]) -> list[str]:
        return sorted(names, key=lambda name: (self._in_flight[name], self.names.index(name)))

    # -- the rule ---------------------------------------------------------------------------------
    def route(self, key: RouteKey) -> Route:
        live = self.live
        if not live:
            return Route((), "none_live")
        by_load = self._least_loaded(live)
        if key.sticky is not None:
            learned = self._sticky.get(key.sticky)
            if learned in live:
                return Route(_first(learned, by_load), "conversation")
            return Route(_first(rendezvous_order(key.sticky, live)[0], by_load), "conversation")
        for prefix in reversed(key.prefix_hashes):
            holder = self._prefixes.get(prefix)
            if holder in live:
                return Route(_first(holder, by_load), "prefix")
        return Route(tuple(by_load), "least_loaded")

    def served(self, name: str, key: RouteKey, learned_sticky: Sequence[str] = ()) -> None:
        """`name` served a request for `key`; `learned_sticky`: keys its response revealed (the
        conversation a first turn made, the session it began)."""
        for sticky in (key.sticky, *learned_sticky):
            if sticky is not None:
                self._sticky.remember(sticky, name)
        for prefix in key.prefix_hashes:
            self._prefixes.remember(prefix, name)


def _first(name: str, others: Sequence[str]) -> tuple[str, ...]:
    return (name, *(other for other in others if other != name))
