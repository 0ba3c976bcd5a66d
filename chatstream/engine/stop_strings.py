"""Stop-string matching over a stream of text, in time and memory linear in the stop strings' length.

Owns `StopStringMatcher`, an Aho-Corasick automaton over one request's stop strings. Text is fed
as it is produced; the matcher reports the first stop string to complete, and at any moment knows
how long the text's longest tail is that could still grow into a stop string (the text the
detokenizer must hold back). Both come from the automaton's state, so each new character costs
amortised O(1) whatever the stop strings' number or length, and building it costs O(total length).

Why not a library: the hold-back length is the depth of the automaton's current state, which the
Aho-Corasick packages do not expose; and the automaton is small enough to own.

Memory: the trie has one node per distinct stop-string prefix, kept in flat int arrays (about 20
bytes a character); only nodes where stop strings branch apart get a dict. A single stop string
of 1,024 characters costs ~20 KB, where the previous set of all its prefixes cost ~0.5 MB.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence

_ROOT = 0
_NONE = -1


class StopStringMatcher:
    """The first completion of any of `stops` in the text fed so far.

    Ties: of the stop strings that complete at the same character, the longest is reported (it
    starts first, so cutting before it leaves the least text); a stop string that completes earlier
    always wins over one that would complete later.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        if not stops or any(not s for s in stops):
            raise ValueError("stops must be one or more non-empty strings")
        self.stops = list(stops)
        # Children: a node's only child in two flat arrays; a node with several children in a dict.
        self._child_char = array("i", [_NONE])
        self._child_node = array("i", [_NONE])
        self._branches: dict[int, dict[int, int]] = {}
        depth = array("i", [0])
        ends = array("i", [_NONE])  # the stop string ending exactly at this node
        for index, stop in enumerate(self.stops):
            node = _ROOT
            for ch in stop:
                child = self._child(node, ord(ch))
                if child == _NONE:
                    child = len(depth)
                    depth.append(depth[node] + 1)
                    ends.append(_NONE)
                    self._child_char.append(_NONE)
                    self._child_node.append(_NONE)
                    self._add_child(node, ord(ch), child)
                node = child
            if ends[node] == _NONE or len(self.stops[ends[node]]) < len(stop):
                ends[node] = index  # a duplicate keeps its first index
        self._fail, self._match, self._hold = self._link(depth, ends)
        self._node = _ROOT

    @property
    def hold_back(self) -> int:
        """Length of the longest tail of the text fed so far that is a proper prefix of a stop string."""
        return self._hold[self._node]

    def feed(self, text: str, start: int = 0) -> tuple[int, str] | None:
        """Advance over `text[start:]` until a stop string completes.

        Returns (offset in `text` just past the completed stop string, that stop string) and stops
        there: the rest of `text` is not read (feed it again from that offset to go on). Returns
        None once the whole text is read without a completion.
        """
        node = self._node
        fail, match = self._fail, self._match
        for offset in range(start, len(text)):
            code = ord(text[offset])
            child = self._child(node, code)
            while child == _NONE and node != _ROOT:
                node = fail[node]
                child = self._child(node, code)
            node = _ROOT if child == _NONE else child
            if match[node] != _NONE:
                self._node = node
                return offset + 1, self.stops[match[node]]
        self._node = node
        return None

    def _child(self, node: int, code: int) -> int:
        if self._child_char[node] == code:
            return self._child_node[node]
        branch = self._branches.get(node)
        return _NONE if branch is None else branch.get(code, _NONE)

    def _add_child(self, node: int, code: int, child: int) -> None:
        if self._child_char[node] == _NONE and node not in self._branches:
            self._child_char[node] = code
            self._child_node[node] = child
            return
        branch = self._branches.setdefault(node, {})
        if self._child_char[node] != _NONE:  # the node branches now: move its only child to the dict
            branch[self._child_char[node]] = self._child_node[node]
            self._child_char[node] = _NONE
            self._child_node[node] = _NONE
        branch[code] = child

    def _children(self, node: int) -> list[tuple[int, int]]:
        if self._child_char[node] != _NONE:
            return [(self._child_char[node], self._child_node[node])]
        return list(self._branches.get(node, {}).items())

    def _link(self, depth: array, ends: array) -> tuple[array, array, array]:
        """Failure links, the longest stop string ending at each node, and each node's hold-back.

        Breadth first, so every node's failure target (a shallower node) is final before it."""
        size = len(depth)
        fail = array("i", bytes(4 * size))
        match = array("i", ends)
        hold = array("i", bytes(4 * size))
        queue = array("i", [_ROOT])
        head = 0
        while head < len(queue):
            node = queue[head]
            head += 1
            children = self._children(node)
            for code, child in children:
                if node != _ROOT:
                    target = fail[node]
                    while self._child(target, code) == _NONE and target != _ROOT:
                        target = fail[target]
                    found = self._child(target, code)
                    fail[child] = found if found not in (_NONE, child) else _ROOT
                if match[child] == _NONE:
                    match[child] = match[fail[child]]  # a shorter stop string ending here
                queue.append(child)
            # A node with children is a proper prefix of some stop string: hold all of it back;
            # a leaf holds back what its longest proper suffix does.
            hold[node] = depth[node] if children else hold[fail[node]]
        return fail, match, hold
