"""`chatstream warmup [MODEL]`: the one-time work of a first start, done ahead.

A first `chatstream serve` on a machine converts the bundled model (about half a minute), builds
the CPU attention kernel (tens of seconds on a small machine) and has no recorded load time to
show an ETA against. This command does all of it without serving: after it, a start is only the
load and the warm-up. Run it at install time, in an image build (`--no-kernel` there: the kernel
is compiled for the CPU it is built on), or before taking a server into rotation.
"""

from __future__ import annotations

import argparse
import logging
import time

logger = logging.getLogger("chatstream.startup")


def add_warmup_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="smollm2",
                        help="local HF directory, hub id, or 'smollm2' (the bundled SmolLM2-135M-Instruct)")
    parser.add_argument("--dtype", default="auto", help="auto | float32 | bfloat16 | float16")
    parser.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda if available)")
    parser.add_argument("--no-kernel", action="store_true",
                        help="do not build the CPU attention kernel (e.g. in an image built on another CPU)")
    parser.add_argument("--no-load", action="store_true",
                        help="only convert and build; do not load the model to record its load time")


def run_warmup(args: argparse.Namespace) -> int:
    from chatstream.commands.logging_setup import quiet_library_bars
    from chatstream.engine.kernel_prebuild import KernelPrebuild
    from chatstream.engine.model_loader import SMOLLM2_ALIAS, ensure_smollm2, resolve_device

    quiet_library_bars()
    t0 = time.perf_counter()
    model = args.model
    if model.lower() == SMOLLM2_ALIAS:
        path = ensure_smollm2()  # the convert phase, when it has not been done yet
        logger.info("the bundled model is ready in %s", path)
    device = resolve_device(args.device)
    if not args.no_kernel and device.type == "cpu":
        if not KernelPrebuild().wait():
            logger.warning("the CPU attention kernel cannot be built here; the engine will use SDPA")
    if not args.no_load:
        from chatstream.facade.llm import LLM

        # A small KV cache: this load only records its time and runs the warm-up request.
        LLM(None if model.lower() == SMOLLM2_ALIAS else model, dtype=args.dtype, device=args.device,
            num_kv_blocks=64, warmup=True, cpu_attention_kernel=not args.no_kernel)
    logger.info("warm-up finished in %.1f s; the next start skips the one-time work", time.perf_counter() - t0)
    return 0
