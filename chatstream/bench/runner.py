"""Orchestration of `chatstream bench`: resolve the model, build the workload once, then run each contender in
its own child process, one after another, and collect their results.

Owns `BenchConfig` (the options), the choice of contenders (which are available here and why not), the shared
settings every contender gets (KV budget, context length, threads), and the child processes' environment and
lifetime. Why one process per contender is explained in `chatstream.bench.worker`. Children run one at a time so
they never compete for cores; each is started in its own session so a timeout can end it and any processes it
started (vLLM's engine core) without touching anything else.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatstream.bench.contenders import BASELINE, CONTENDER_MODULES, SEPARATE_INTERPRETER
from chatstream.bench.protocol import BenchJob, WorkerResult
from chatstream.bench.workload import Workload, build_workload

ON_REQUEST = frozenset({"chatstream-int8"})  # run only when named in --contenders
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
MIN_KV_BUDGET_BYTES = 64 * 1024**2
KV_HEADROOM = 1.25  # auto KV budget: every request's full sequence at once, plus a quarter of slack
MIB = 1024**2
# Sequences are sized in the coarsest block any contender uses (vLLM's CPU default: 128 tokens), so the budget
# fits every engine's rounding; a budget in tokens (not a fixed floor) keeps tiny test models' caches tiny.
COARSEST_BLOCK = 128


@dataclass
class BenchConfig:
    model: str | None = None  # None / "smollm2": the bundled SmolLM2-135M-Instruct
    num_requests: int = 32
    prompt_len: int = 64  # tokens per prompt after the shared prefix
    output_len: int = 128
    shared_prefix_len: int = 0
    contenders: list[str] | None = None  # None: every available one
    dtype: str = "float32"
    threads: int | None = None  # None: every core this process may use
    seed: int = 0
    kv_cache_gb: float | None = None  # None: sized to hold the whole workload at once
    max_num_batched_tokens: int | None = None  # None: each engine's own default
    warmup: bool = True
    vllm_python: str | None = None  # None: this interpreter, if it has vLLM
    vllm_cpu_bind: str | None = None  # None: the first `threads` allowed cores
    vllm_reserved_cpus: int = 0
    vllm_enforce_eager: bool = False
    vllm_env: dict[str, str] = field(default_factory=dict)  # extra environment for the vLLM worker
    engine_options: dict[str, Any] = field(default_factory=dict)  # extra LLM(...) options for our engine
    timeout_s: float = 3600.0
    verbose: bool = False  # stream the children's output instead of keeping it in a log
    reverse_order: bool = False  # run the contenders last to first (`--repeat` alternates the order by round)


@dataclass
class ContenderOutcome:
    name: str
    result: WorkerResult | None = None  # None when skipped
    skipped: str | None = None
    process_s: float = 0.0  # the child's whole life, start-up included
    log_path: str | None = None


@dataclass
class BenchOutcome:
    config: BenchConfig
    model: str
    threads: int
    kv_cache_bytes: int
    max_model_len: int
    workload: Workload
    outcomes: list[ContenderOutcome]


def allowed_cpus() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def cpu_list(cpus: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5", the syntax VLLM_CPU_OMP_THREADS_BIND takes."""
    runs: list[list[int]] = []
    for cpu in sorted(cpus):
        if runs and cpu == runs[-1][1] + 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def resolve_model(model: str | None) -> str:
    """A directory every contender (vLLM included) can load; hub ids pass through for networked machines."""
    if model is None or model == "smollm2":
        from chatstream.engine.model_loader import ensure_smollm2

        return str(ensure_smollm2())
    path = Path(model).expanduser()
    return str(path.resolve()) if path.is_dir() else model


def vllm_python(config: BenchConfig) -> str | None:
    if config.vllm_python:
        return config.vllm_python
    return sys.executable if importlib.util.find_spec("vllm") is not None else None


def select_contenders(config: BenchConfig) -> tuple[list[str], dict[str, str]]:
    """(contenders to run, {contender: why it is skipped})."""
    unknown = [c for c in config.contenders or [] if c not in CONTENDER_MODULES]
    if unknown:
        raise ValueError(f"unknown contender(s) {', '.join(unknown)}; choose from {', '.join(CONTENDER_MODULES)}")
    wanted = list(config.contenders) if config.contenders else [c for c in CONTENDER_MODULES if c not in ON_REQUEST]
    skipped: dict[str, str] = {}
    if importlib.util.find_spec("chatstream.facade.llm") is None:
        skipped["chatstream"] = skipped["chatstream-noprefix"] = "chatstream.facade.llm is not available"
    if not config.contenders and config.shared_prefix_len == 0:
        skipped["chatstream-noprefix"] = "no shared prefix (--shared-prefix-len 0): nothing for the cache to find"
    from transformers import GenerationMixin

    if not hasattr(GenerationMixin, "generate_batch"):
        skipped["hf-continuous"] = "this transformers version has no generate_batch"
    if vllm_python(config) is None:
        skipped["vllm"] = "vLLM is not importable here; pass --vllm-python PATH to a Python that has it"
    return [c for c in wanted if c not in skipped], {c: r for c, r in skipped.items() if c in wanted}


def kv_budget_bytes(model: str, dtype: str, workload: Workload) -> int:
    from transformers import AutoConfig

    from chatstream.bench.contenders.hf_model import kv_bytes_per_token

    per_token = kv_bytes_per_token(AutoConfig.from_pretrained(model), DTYPE_BYTES[dtype])
    tokens = sum(-(-(len(p) + workload.output_len) // COARSEST_BLOCK) * COARSEST_BLOCK for p in workload.prompts)
    # A floor: for one request the exact figure is a few MiB, less than vLLM's start-up check wants
    # for one full-length sequence; 64 MiB changes nothing for the engines (they use what they need).
    return max(MIN_KV_BUDGET_BYTES, -(-int(per_token * tokens * KV_HEADROOM) // MIB) * MIB)


def _child_env(config: BenchConfig, name: str, threads: int) -> dict[str, str]:
    env = dict(os.environ)
    repo_root = str(Path(__file__).resolve().parents[2])  # the directory holding the chatstream package
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo_root, env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = str(threads)
    env["TOKENIZERS_PARALLELISM"] = "false"
    if name == "vllm":
        env["VLLM_CPU_OMP_THREADS_BIND"] = config.vllm_cpu_bind or cpu_list(allowed_cpus()[:threads])
        env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = str(config.vllm_reserved_cpus)
        env.update(config.vllm_env)
    return env


def run_worker(job: BenchJob, python: str, env: dict[str, str], workdir: Path, timeout_s: float,
               verbose: bool) -> ContenderOutcome:
    name = job.contender
    job_path, out_path, log_path = (workdir / f"{name}.{ext}" for ext in ("job.json", "result.json", "log"))
    job_path.write_text(job.to_json())
    cmd = [python, "-m", "chatstream.bench.worker", "--contender", name,
           "--workload-json", str(job_path), "--out", str(out_path)]
    start = time.perf_counter()
    with open(log_path, "w") as log:
        # Verbose output goes to stderr so `--json -` keeps stdout clean.
        proc = subprocess.Popen(cmd, env=env, stdout=sys.stderr if verbose else log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            proc.wait(timeout=timeout_s)
        except BaseException as exc:  # timeout, or Ctrl-C, which the child's own session does not receive
            os.killpg(proc.pid, signal.SIGKILL)  # the worker's session: it and whatever it started
            proc.wait()
            if not isinstance(exc, subprocess.TimeoutExpired):
                raise
    elapsed = time.perf_counter() - start
    if out_path.exists():
        result = WorkerResult.from_json(out_path.read_text())
    else:
        tail = "" if verbose else "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        why = f"timed out after {timeout_s:.0f}s" if proc.returncode == -signal.SIGKILL else \
            f"exited with code {proc.returncode}"
        result = WorkerResult(contender=name, ok=False, error=f"worker {why} without a result\n{tail}")
    return ContenderOutcome(name=name, result=result, process_s=elapsed, log_path=None if verbose else str(log_path))


def run_benchmark(config: BenchConfig, progress: Callable[[str], None] = lambda _msg: None) -> BenchOutcome:
    to_run, skipped = select_contenders(config)
    # The baseline first: its numbers are what every ratio divides by, and it is the cheapest to get wrong.
    to_run.sort(key=lambda c: c != BASELINE)
    if config.reverse_order:
        to_run.reverse()
    threads = config.threads or len(allowed_cpus())
    progress("resolving model ...")
    model = resolve_model(config.model)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    workload = build_workload(lambda text: list(tokenizer(text, add_special_tokens=False)["input_ids"]),
                              config.num_requests, config.prompt_len, config.output_len,
                              config.shared_prefix_len, config.seed)
    kv_bytes = int(config.kv_cache_gb * 1024**3) if config.kv_cache_gb else kv_budget_bytes(model, config.dtype, workload)
    max_model_len = workload.max_prompt_len + workload.output_len
    outcomes = [ContenderOutcome(name=c, skipped=why) for c, why in skipped.items()]
    workdir = Path(tempfile.mkdtemp(prefix="chatstream-bench-"))
    for index, name in enumerate(to_run, 1):
        job = BenchJob(
            contender=name, model=model, dtype=config.dtype, threads=threads, prompts=workload.prompts,
            output_len=workload.output_len, warmup_prompt=workload.warmup_prompt, kv_cache_bytes=kv_bytes,
            max_model_len=max_model_len, max_num_batched_tokens=config.max_num_batched_tokens,
            warmup=config.warmup, options=_options(config, name),
        )
        python = (vllm_python(config) or sys.executable) if name in SEPARATE_INTERPRETER else sys.executable
        progress(f"[{index}/{len(to_run)}] {name} ...")
        outcome = run_worker(job, python, _child_env(config, name, threads), workdir, config.timeout_s,
                             config.verbose)
        status = "ok" if outcome.result and outcome.result.ok else f"FAILED (log: {outcome.log_path})"
        progress(f"[{index}/{len(to_run)}] {name}: {status} ({outcome.process_s:.1f}s)")
        outcomes.append(outcome)
    # Logs are only worth keeping when something went wrong.
    if all(o.result.ok for o in outcomes if o.result is not None):
        shutil.rmtree(workdir, ignore_errors=True)
        for outcome in outcomes:
            outcome.log_path = None
    return BenchOutcome(config=config, model=model, threads=threads, kv_cache_bytes=kv_bytes,
                        max_model_len=max_model_len, workload=workload, outcomes=outcomes)


def _options(config: BenchConfig, name: str) -> dict[str, Any]:
    if name.startswith("chatstream"):
        return {"engine_options": dict(config.engine_options)}
    if name == "vllm":
        return {"enforce_eager": config.vllm_enforce_eager}
    return {}
