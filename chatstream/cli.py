"""The `chatstream` command line: `serve` (the server), `chat` (console chat), `generate` (the engine on
prompts) and `bench` (throughput).

Heavy imports happen inside the subcommands, so `chatstream --help` answers at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence


def _add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="smollm2",
                        help="local HF directory, hub id, or 'smollm2' (the bundled SmolLM2-135M-Instruct)")
    parser.add_argument("--dtype", default="auto", help="auto | float32 | bfloat16 | float16")
    parser.add_argument("--quantization", default=None, choices=["int8"],
                        help="weight-only per-channel int8 linear weights (default: none)")
    parser.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda if available)")
    parser.add_argument("--block-size", type=int, default=16)
    parser.add_argument("--kv-cache-memory-gb", type=float, default=None,
                        help="KV cache budget (default: sized for the machine)")
    parser.add_argument("--num-kv-blocks", type=int, default=None,
                        help="exact number of KV blocks (overrides --kv-cache-memory-gb)")
    parser.add_argument("--max-num-seqs", type=int, default=64)
    parser.add_argument("--max-num-batched-tokens", type=int, default=512)
    parser.add_argument("--max-model-len", type=int, default=None)
    parser.add_argument("--no-prefix-caching", action="store_true")


def _engine_options(args: argparse.Namespace) -> dict:
    return {
        "dtype": args.dtype, "device": args.device, "block_size": args.block_size,
        "kv_cache_memory_gb": args.kv_cache_memory_gb, "num_kv_blocks": args.num_kv_blocks,
        "max_num_seqs": args.max_num_seqs,
        "max_num_batched_tokens": args.max_num_batched_tokens, "max_model_len": args.max_model_len,
        "enable_prefix_caching": not args.no_prefix_caching, "quantization": args.quantization,
    }


def _run_generate(args: argparse.Namespace) -> int:
    from chatstream import LLM, SamplingParams

    llm = LLM(None if args.model == "smollm2" else args.model, **_engine_options(args))
    tokenizer = llm.tokenizer
    prompts = args.prompt or ["What is the capital of France?"]
    if not args.raw and getattr(tokenizer, "chat_template", None):
        texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                               add_generation_prompt=True) for p in prompts]
    else:
        texts = prompts
    params = SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p,
                            top_k=args.top_k, seed=args.seed)
    for prompt, out in zip(prompts, llm.generate(texts, params)):
        completion = out.outputs[0]
        print(f"### {prompt}\n{completion.text.strip()}\n"
              f"[{len(completion.token_ids)} tokens, finish_reason={completion.finish_reason}]\n")
    return 0


def _run_chat(args: argparse.Namespace) -> int:
    from chatstream.facade.console import run_chat

    return run_chat(args, _engine_options(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatstream", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)

    from chatstream.http.serve import add_serve_arguments, run_serve

    serve = sub.add_parser("serve", help="serve the web chat, the OpenAI-compatible API and /chat_stream")
    add_serve_arguments(serve)
    serve.set_defaults(func=run_serve)

    gen = sub.add_parser("generate", help="generate replies to prompts with the engine")
    gen.add_argument("prompt", nargs="*", help="user message(s); several run as one batch")
    gen.add_argument("--max-tokens", type=int, default=128)
    gen.add_argument("--temperature", type=float, default=0.0)
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--top-k", type=int, default=0)
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--raw", action="store_true", help="send the prompt as is, without the chat template")
    _add_engine_arguments(gen)
    gen.set_defaults(func=_run_generate)

    from chatstream.facade.console import add_chat_arguments

    chat = sub.add_parser("chat", help="chat with a model in the console (YOU: / AI :)")
    add_chat_arguments(chat)
    _add_engine_arguments(chat)
    chat.set_defaults(func=_run_chat)

    from chatstream.bench.cli import add_bench_arguments, run_bench

    bench = sub.add_parser("bench", help="throughput benchmark: our engine against HF and vLLM")
    add_bench_arguments(bench)
    bench.set_defaults(func=run_bench)
    from chatstream.bench.serve_cli import add_serve_bench_arguments, serve_bench_main

    bench_sub = bench.add_subparsers(dest="bench_command", metavar="{serve}")
    serve_bench = bench_sub.add_parser("serve", help="serving benchmark over HTTP against OpenAI-compatible servers")
    add_serve_bench_arguments(serve_bench)
    serve_bench.set_defaults(func=serve_bench_main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
