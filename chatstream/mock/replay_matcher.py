"""Which recorded request a live request follows, and the error when there is none.

Owns `ReplayDivergence` and `RecordingMatcher`. A live request follows a recorded request whose
prompt token ids are exactly its own. When several recorded requests share a prompt (the same
question asked twice at temperature > 0, a regenerate), they are handed out in recording order,
the first live request getting the first recording, the next the second, and so on, starting
over after the last: a test that repeats what was recorded gets what was recorded, in order.

A prompt that matches no recording is a divergence. It is located on the recorded token chain
(prompt followed by outputs) that shares the longest prefix with the live prompt: the first
position where they differ is the step, the recorded token there is the expected one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from chatstream.mock.recording import RecordedRequest
from chatstream.engine.sampling_params import SamplingParams


class ReplayDivergence(ValueError):
    """A live request left the recording.

    step: position in the request's token chain (prompt, then outputs) where it left.
    expected_token_id: the recorded token there; None when the recording has no step there.
    actual_token_id: the live token there; None when the live prompt ends there (or when the
        live settings forbid the recorded token, see the message).
    """

    def __init__(self, message: str, request_id: str, step: int, expected_token_id: int | None,
                 actual_token_id: int | None) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.step = step
        self.expected_token_id = expected_token_id
        self.actual_token_id = actual_token_id

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.request_id, self.step, self.expected_token_id, self.actual_token_id))


def _common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class RecordingMatcher:
    """Hands out recorded requests to live ones by prompt; names the divergence when none fits."""

    def __init__(self, recorded: Iterable[RecordedRequest], tokenizer: Any, eos_token_ids: Iterable[int]) -> None:
        self.recorded = tuple(recorded)
        self.tokenizer = tokenizer
        self.eos_token_ids = frozenset(eos_token_ids)
        self._by_prompt: dict[tuple[int, ...], list[RecordedRequest]] = {}
        for r in self.recorded:
            # A request aborted before its first token recorded nothing to replay.
            if r.output_token_ids:
                self._by_prompt.setdefault(r.prompt_token_ids, []).append(r)
        self._next: dict[tuple[int, ...], int] = {}

    def match(self, request_id: str, prompt_token_ids: Sequence[int], params: SamplingParams) -> RecordedRequest:
        """The recorded request this live request follows; raises ReplayDivergence if there is none."""
        key = tuple(prompt_token_ids)
        candidates = self._by_prompt.get(key)
        if not candidates:
            raise self._no_recording(request_id, key)
        turn = self._next.get(key, 0)
        recorded = candidates[turn % len(candidates)]
        self._check_allowed(request_id, recorded, params)
        self._next[key] = turn + 1  # only once accepted, so a refused request does not skip a recording
        return recorded

    # -- messages ------------------------------------------------------------------------------
    def describe(self, token_id: int | None, missing: str) -> str:
        if token_id is None:
            return missing
        if self.tokenizer is None:
            return f"token {token_id}"
        try:
            piece = self.tokenizer.convert_ids_to_tokens(int(token_id))
        except Exception:  # noqa: BLE001 - a message must never fail because of its decoration
            return f"token {token_id}"
        return f"token {token_id} ({piece!r})"

    def _error(self, request_id: str, step: int, expected: int | None, actual: int | None, expected_missing: str,
               actual_missing: str, note: str = "") -> ReplayDivergence:
        message = (f"request {request_id!r} diverged from the recording at step {step} of its token chain: "
                   f"expected {self.describe(expected, expected_missing)}, "
                   f"got {self.describe(actual, actual_missing)}{note}")
        return ReplayDivergence(message, request_id, step, expected, actual)

    def _no_recording(self, request_id: str, prompt: tuple[int, ...]) -> ReplayDivergence:
        if not self.recorded:
            return self._error(request_id, 0, None, prompt[0] if prompt else None,
                               "end of recording (the recording has no requests)", "end of prompt")
        best, step = self.recorded[0], -1
        for r in self.recorded:
            n = _common_prefix_len(r.token_chain, prompt)
            if n > step:  # strictly longer: ties go to the earliest recording
                best, step = r, n
        chain = best.token_chain
        expected = chain[step] if step < len(chain) else None
        actual = prompt[step] if step < len(prompt) else None
        note = (f" (closest recorded request: {best.request_id!r}, requests/{best.file_name}, "
                f"{len(best.prompt_token_ids)} prompt + {len(best.output_token_ids)} output tokens)")
        return self._error(request_id, step, expected, actual,
                           "end of recording (the recording has no step there)",
                           "end of prompt (no recorded request has this prompt)", note)

    def _check_allowed(self, request_id: str, recorded: RecordedRequest, params: SamplingParams) -> None:
        # The only setting that can stop the sampler from picking a forced token is a block:
        # EOS and stop ids are forbidden while the output is shorter than min_tokens.
        if params.min_tokens == 0:
            return
        blocked = set(params.stop_token_ids or ()) | (set() if params.ignore_eos else set(self.eos_token_ids))
        for i, token_id in enumerate(recorded.output_token_ids[: params.min_tokens]):
            if token_id in blocked:
                step = len(recorded.prompt_token_ids) + i
                raise self._error(request_id, step, token_id, None, "",
                                  f"no token: min_tokens={params.min_tokens} forbids the recorded one there")
