"""The systems under test, one module each, and the registry that names them.

Owns the contender names, which module runs each, and the one-line description the report prints. Every module
exposes `run(job: BenchJob) -> ContenderRun`; modules are imported only inside the worker process that runs them,
so this registry stays standard-library only.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from chatstream.bench.protocol import BenchJob, ContenderRun

BASELINE = "hf-sequential"  # the original ChatStream: one request at a time through HF `generate`

CONTENDER_MODULES: dict[str, str] = {
    "chatstream": "chatstream.bench.contenders.chatstream_engine",
    "chatstream-noprefix": "chatstream.bench.contenders.chatstream_engine",
    "chatstream-int8": "chatstream.bench.contenders.chatstream_engine",
    "hf-sequential": "chatstream.bench.contenders.hf_sequential",
    "hf-static": "chatstream.bench.contenders.hf_static_batch",
    "hf-continuous": "chatstream.bench.contenders.hf_continuous",
    "vllm": "chatstream.bench.contenders.vllm_engine",
}

DESCRIPTIONS: dict[str, str] = {
    "chatstream": "our engine (EngineCore step loop), prefix caching on",
    "chatstream-noprefix": "our engine, prefix caching off",
    "chatstream-int8": "our engine, weight-only int8 linear weights",
    "hf-sequential": "HF generate, one request at a time (later requests wait)",
    "hf-static": "HF generate on one left-padded batch of all requests",
    "hf-continuous": "transformers continuous batching (generate_batch)",
    "vllm": "vLLM (CPU build), LLMEngine step loop",
}

# The vLLM contender runs under its own interpreter (vLLM pins its own torch), not the one running the bench.
SEPARATE_INTERPRETER = frozenset({"vllm"})


def load_run(name: str) -> Callable[[BenchJob], ContenderRun]:
    if name not in CONTENDER_MODULES:
        raise ValueError(f"unknown contender {name!r}; choose from {', '.join(CONTENDER_MODULES)}")
    return importlib.import_module(CONTENDER_MODULES[name]).run
