"""The `chatstream` command line: `serve` (the server), `chat` (console chat, local or with a running
server), `generate` (the engine on prompts), `warmup` (the one-time work, ahead) and `bench` (throughput).

Every `--help` shows each option's default. `serve`, `chat`, `generate` and `warmup` read
`--config FILE` (YAML or TOML, every flag a key; flags win over the file); `serve --print-config`
shows the effective options. Heavy imports happen inside the subcommands, so `--help` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from chatstream.commands.config_file import (
    ConfigFileError,
    add_config_arguments,
    apply_config_file,
    explicit_dests,
    print_config,
    read_config_file,
)
from chatstream.commands.help_defaults import show_defaults
from chatstream.commands.logging_setup import LOG_FORMATS, configure_logging, no_bars_in_logs


def _add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="smollm2",
                        help="local HF directory, hub id, or 'smollm2' (the bundled SmolLM2-135M-Instruct)")
    parser.add_argument("--dtype", default="auto", help="auto | float32 | bfloat16 | float16")
    parser.add_argument("--quantization", default=None, choices=["int8"],
                        help="weight-only per-channel int8 linear weights (default: none)")
    parser.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda if available)")
    parser.add_argument("--block-size", type=int, default=16, help="tokens per KV cache block")
    parser.add_argument("--kv-cache-memory-gb", type=float, default=None,
                        help="KV cache budget (default: sized for the machine)")
    parser.add_argument("--num-kv-blocks", type=int, default=None,
                        help="exact number of KV blocks (overrides --kv-cache-memory-gb)")
    parser.add_argument("--max-num-seqs", type=int, default=64, help="sequences one engine step may run")
    parser.add_argument("--max-num-batched-tokens", type=int, default=512, help="tokens one engine step may run")
    parser.add_argument("--max-model-len", type=int, default=None,
                        help="prompt + reply tokens one request may reach (default: the model's own)")
    parser.add_argument("--no-prefix-caching", action="store_true", help="do not share KV blocks of equal prefixes")


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

    from chatstream.commands.logging_setup import quiet_library_bars

    prompts = _prompts(args)
    quiet_library_bars()
    llm = LLM(None if args.model == "smollm2" else args.model, **_engine_options(args))
    tokenizer = llm.tokenizer
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


def _prompts(args: argparse.Namespace) -> list[str]:
    """The prompts given as arguments, else the whole of stdin as one prompt (when it is not a terminal)."""
    if args.prompt:
        return list(args.prompt)
    if sys.stdin is None or sys.stdin.isatty():
        raise SystemExit("chatstream generate: give a prompt (chatstream generate \"Hello\") or pipe one on stdin")
    text = sys.stdin.read().strip()
    if not text:
        raise SystemExit("chatstream generate: stdin held no prompt")
    return [text]


def _run_chat(args: argparse.Namespace) -> int:
    if args.url:
        from chatstream.commands.remote_chat import run_remote_chat

        return run_remote_chat(args)
    from chatstream.commands.logging_setup import quiet_library_bars
    from chatstream.facade.console import run_chat

    quiet_library_bars()
    return run_chat(args, _engine_options(args))


def _run_serve(single: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """`chatstream serve`: one engine in this process, or `--replicas N` on Ray Serve."""
    def run(args: argparse.Namespace) -> int:
        if getattr(args, "replicas", None) is None:
            return single(args)
        from chatstream.http.serve import config_from_args
        from chatstream.ray.command import run_replicated_serve

        return run_replicated_serve(args, config_from_args(args))

    return run


def _add_model_positional(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_positional", nargs="?", default=None, metavar="MODEL",
                        help="the model, as --model takes it (default: --model's value)")


def _add_log_arguments(parser: argparse.ArgumentParser) -> None:
    # The same options as before the subcommand, so `chatstream serve --log-level DEBUG` works too.
    parser.add_argument("--log-level", default=argparse.SUPPRESS, help="DEBUG | INFO | WARNING | ERROR (default: INFO)")
    parser.add_argument("--log-format", default=argparse.SUPPRESS, choices=LOG_FORMATS,
                        help="text lines, or one JSON object per line (default: text)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatstream", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log-level", default="INFO", help="DEBUG | INFO | WARNING | ERROR")
    parser.add_argument("--log-format", default="text", choices=LOG_FORMATS,
                        help="text lines, or one JSON object per line")
    sub = parser.add_subparsers(dest="command", required=True)

    from chatstream.http.serve import add_serve_arguments, run_serve

    serve = sub.add_parser("serve", help="serve the web chat, the OpenAI-compatible API and /chat_stream")
    _add_model_positional(serve)
    add_serve_arguments(serve)
    from chatstream.ray.command import add_replica_arguments

    add_replica_arguments(serve)
    add_config_arguments(serve)
    serve.set_defaults(func=_run_serve(run_serve), command_parser=serve)

    gen = sub.add_parser("generate", help="generate replies to prompts with the engine")
    gen.add_argument("prompt", nargs="*", help="user message(s); several run as one batch (default: stdin, "
                                               "read whole as one prompt)")
    gen.add_argument("--max-tokens", type=int, default=128, help="tokens to generate at most")
    gen.add_argument("--temperature", type=float, default=0.0, help="0 means greedy")
    gen.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling; 1 disables it")
    gen.add_argument("--top-k", type=int, default=0, help="0 disables top-k")
    gen.add_argument("--seed", type=int, default=None, help="seed of the draws (default: random)")
    gen.add_argument("--raw", action="store_true", help="send the prompt as is, without the chat template")
    _add_engine_arguments(gen)
    add_config_arguments(gen)
    gen.set_defaults(func=_run_generate, command_parser=gen)

    from chatstream.commands.remote_chat import add_remote_chat_arguments
    from chatstream.facade.console import add_chat_arguments

    chat = sub.add_parser("chat", help="chat in the console (YOU: / AI :) with a model here, or with a running "
                                       "server (--url)")
    _add_model_positional(chat)
    add_chat_arguments(chat)
    add_remote_chat_arguments(chat)
    _add_engine_arguments(chat)
    add_config_arguments(chat)
    chat.set_defaults(func=_run_chat, command_parser=chat)

    from chatstream.commands.warmup import add_warmup_arguments, run_warmup

    warmup = sub.add_parser("warmup", help="do the one-time work ahead: convert the bundled model, build the CPU "
                                           "attention kernel, record the load time")
    _add_model_positional(warmup)
    add_warmup_arguments(warmup)
    add_config_arguments(warmup)
    warmup.set_defaults(func=run_warmup, command_parser=warmup)

    from chatstream.bench.cli import add_bench_arguments, run_bench

    bench = sub.add_parser("bench", help="throughput benchmark: our engine against HF and vLLM")
    add_bench_arguments(bench)
    bench.set_defaults(func=run_bench)
    from chatstream.bench.serve_cli import add_serve_bench_arguments, serve_bench_main

    bench_sub = bench.add_subparsers(dest="bench_command", metavar="{serve,soak}")
    serve_bench = bench_sub.add_parser("serve", help="serving benchmark over HTTP against OpenAI-compatible servers")
    add_serve_bench_arguments(serve_bench)
    serve_bench.set_defaults(func=serve_bench_main)
    from chatstream.bench.soak import add_soak_arguments, run_soak_command

    soak = bench_sub.add_parser("soak", help="disconnect soak and /health under big prompts, against a served model")
    add_soak_arguments(soak)
    soak.set_defaults(func=run_soak_command)
    for command in (serve, gen, chat, warmup, bench):
        _add_log_arguments(command)
    show_defaults(parser)
    return parser


def parse_command_line(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """Parse `argv`, then fill in the options of `--config FILE` that the command line did not give
    and resolve the positional MODEL against `--model`."""
    args = parser.parse_args(argv)
    command_parser: argparse.ArgumentParser | None = getattr(args, "command_parser", None)
    if command_parser is None:
        return args
    parsers = [command_parser, parser]
    explicit = explicit_dests(parsers[::-1], argv)
    if getattr(args, "config", None):
        try:
            apply_config_file(args, parsers, read_config_file(args.config), explicit, args.config)
        except ConfigFileError as exc:
            command_parser.error(str(exc))
    positional = getattr(args, "model_positional", None)
    if positional is not None:
        if "model" in explicit and args.model != positional:
            command_parser.error(f"the model is given twice: {positional!r} and --model {args.model!r}")
        args.model = positional
    return args


def main(argv: Sequence[str] | None = None) -> int:
    no_bars_in_logs()
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_command_line(parser, argv)
    if getattr(args, "print_config", False):
        print_config(args, [args.command_parser, parser])
        return 0
    configure_logging(args.log_level, args.log_format)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
