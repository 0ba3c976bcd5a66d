"""What the benchmark parent and a contender's child process exchange: the job going in, the timings coming out.

Owns the `BenchJob`, `RequestTiming`, `ContenderRun` and `WorkerResult` dataclasses and their JSON round trip.
Standard library only: the vLLM worker imports this under an interpreter that has neither torch nor transformers
of our versions.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class BenchJob:
    """Everything one contender needs to run the workload; the same for every contender except `contender`."""

    contender: str
    model: str  # a local HuggingFace directory (or a hub id where a network is available)
    dtype: str  # "float32", "bfloat16", ...
    threads: int  # CPU threads for the model's math
    prompts: list[list[int]]  # token ids, used verbatim (no special tokens added by anyone)
    output_len: int  # every request generates exactly this many tokens (EOS ignored)
    warmup_prompt: list[int]  # a short prompt sharing no full block with `prompts`
    kv_cache_bytes: int  # KV budget given to every paged engine, so none wins by hoarding memory
    max_model_len: int  # longest prompt + output_len
    max_num_batched_tokens: int | None = None  # None: each engine's own default
    warmup: bool = True
    options: dict[str, Any] = field(default_factory=dict)  # contender-specific extras (see each contender)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> BenchJob:
        return cls(**json.loads(text))


@dataclass
class RequestTiming:
    """One request as a client saw it. Times are seconds since t0, when every request arrived."""

    num_output_tokens: int
    finish_s: float  # when its last token was available
    token_times: list[float] | None  # one entry per output token; None where the contender cannot stream
    output_token_ids: list[int] = field(default_factory=list)


@dataclass
class ContenderRun:
    """What a contender's `run(job)` returns; peak memory is measured around it by the worker."""

    requests: list[RequestTiming]
    startup_s: float  # model load + engine start + warmup, excluded from every rate
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. KV block usage, prefix-cache hit rate
    notes: list[str] = field(default_factory=list)


@dataclass
class WorkerResult:
    """A child process's answer; `ok` False carries the error text instead of a run."""

    contender: str
    ok: bool
    error: str | None = None
    run: ContenderRun | None = None
    peak_rss_bytes: int = 0  # the worker process itself
    peak_rss_children_bytes: int = 0  # its largest reaped descendant (vLLM's engine-core and worker processes)
    versions: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerResult:
        data = json.loads(text)
        run = data.pop("run")
        if run is not None:
            requests = [RequestTiming(**r) for r in run.pop("requests")]
            run = ContenderRun(requests=requests, **run)
        return cls(run=run, **data)

    def write(self, path: Path) -> None:
        # Write-then-rename so the parent never reads a half-written result from a killed child.
        tmp = path.with_suffix(".partial")
        tmp.write_text(self.to_json())
        tmp.replace(path)
