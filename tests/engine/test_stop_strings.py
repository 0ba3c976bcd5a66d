"""StopStringMatcher against a brute-force reference, and its memory for long stop strings."""

from __future__ import annotations

import random
import tracemalloc

import pytest

from chatstream.engine.stop_strings import StopStringMatcher


def first_completion(text: str, stops: list[str]) -> tuple[int, str] | None:
    """Brute force: the stop string that completes first in `text` (longest on a tie), as (end, stop)."""
    best = None
    for stop in stops:
        index = text.find(stop)
        if index >= 0:
            candidate = (index + len(stop), -len(stop), stop)
            best = candidate if best is None or candidate < best else best
    return None if best is None else (best[0], best[2])


def hold_back(text: str, stops: list[str]) -> int:
    """Brute force: the longest tail of `text` that is a proper prefix of some stop string."""
    return max((k for k in range(1, len(text) + 1) for s in stops if k < len(s) and s.startswith(text[-k:])),
               default=0)


@pytest.mark.parametrize("seed", range(40))
def test_matches_the_brute_force_reference_fed_in_random_pieces(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = "ab" if seed % 2 else "abc "  # a small alphabet makes overlaps and repeats common
    stops = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))) for _ in range(rng.randint(1, 5))]
    text = "".join(rng.choice(alphabet) for _ in range(60))
    expected = first_completion(text, stops)
    matcher = StopStringMatcher(stops)
    fed = 0
    found = None
    while fed < len(text) and found is None:
        piece = text[fed:fed + rng.randint(1, 5)]
        result = matcher.feed(piece)
        if result is not None:
            found = (fed + result[0], result[1])
        else:
            fed += len(piece)
            assert matcher.hold_back == hold_back(text[:fed], stops), (stops, text[:fed])
    assert found == expected, (stops, text)


def test_feeding_on_after_a_completion_finds_the_next_one() -> None:
    matcher = StopStringMatcher(["ab", "b"])
    text = "xabyab"
    assert matcher.feed(text) == (3, "ab")  # "b" completes at the same character: the longer one is reported
    assert matcher.feed(text, 3) == (6, "ab")
    assert matcher.feed(text, 6) is None


def test_hold_back_counts_only_proper_prefixes() -> None:
    matcher = StopStringMatcher(["STOP", "ST"])
    assert matcher.feed("xS") is None and matcher.hold_back == 1
    assert matcher.feed("T") == (1, "ST")
    matcher = StopStringMatcher(["aab"])
    assert matcher.feed("aaaa") is None and matcher.hold_back == 2  # only "aa" can still start "aab"


def test_a_long_stop_string_after_a_near_miss_run_is_found_in_one_pass() -> None:
    stop = "a" * 1023 + "b"
    matcher = StopStringMatcher([stop])
    text = "a" * 5000 + "b"  # every position is a near miss: a naive search would be quadratic
    assert matcher.feed(text) == (len(text), stop)


def test_rejects_no_stops_and_empty_stops() -> None:
    with pytest.raises(ValueError):
        StopStringMatcher([])
    with pytest.raises(ValueError):
        StopStringMatcher(["ok", ""])


def _retained_bytes(stops: list[str]) -> int:
    tracemalloc.start()
    try:
        matcher = StopStringMatcher(stops)
        retained, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert matcher.stops == stops
    return retained


def test_memory_is_linear_in_the_stop_strings_length() -> None:
    rng = random.Random(3)
    sizes = {n: _retained_bytes(["".join(rng.choice("abcdefgh") for _ in range(n))]) for n in (256, 1024, 4096)}
    # About 20 bytes a character (the strings themselves are the caller's). All prefixes of a 1,024-character
    # string, as the matcher before this one kept them, would take over 500 KB.
    assert sizes[1024] < 64 * 1024
    assert sizes[4096] < 4.5 * sizes[1024] and sizes[1024] < 4.5 * sizes[256]  # linear, not quadratic
    many = _retained_bytes(["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(1024)) for _ in range(32)])
    assert many < 2 * 1024 * 1024  # the most SamplingParams allows: 32 strings of 1,024 characters
