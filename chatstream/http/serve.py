"""`chatstream serve`: arguments, the start-up report, and uvicorn.

Options become one frozen `ServerConfig`; `create_app` builds the app and uvicorn serves it on
one worker (the model, the queue and the sessions live in this process). The model loads in the
background; once it is ready the command prints where to find the page and the API, and how
much KV cache there is.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chatstream.facade.chat_stream import ChatStream
    from chatstream.http.app import ServerConfig

GIB = 1024 ** 3


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="smollm2",
                        help="local HF directory, hub id, 'smollm2' (the bundled SmolLM2-135M-Instruct), or a "
                             "recording directory (replayed without weights)")
    parser.add_argument("--chat-prompt", default="chat_template",
                        help="ChatPrompt preset name (default: the model's own chat template)")
    parser.add_argument("--served-model-name", default=None, help="model id shown by /v1/models")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--num-concurrent", type=int, default=16,
                        help="generations that run at once (they are batched together)")
    parser.add_argument("--max-queue", type=int, default=64, help="requests that may wait; the next gets 429")
    parser.add_argument("--max-new-tokens", type=int, default=512, help="default reply length for /chat_stream")
    parser.add_argument("--context-len", type=int, default=None,
                        help="prompt + reply tokens for /chat_stream (default: max_model_len)")
    parser.add_argument("--temperature", type=float, default=0.7, help="default for /chat_stream")
    parser.add_argument("--top-p", type=float, default=0.9, help="default for /chat_stream")
    parser.add_argument("--dtype", default="auto", help="auto | float32 | bfloat16 | float16")
    parser.add_argument("--quantization", default=None, choices=["int8"],
                        help="weight-only per-channel int8 linear weights (default: none)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--max-model-len", type=int, default=None)
    parser.add_argument("--kv-cache-memory-gb", type=float, default=None)
    parser.add_argument("--num-kv-blocks", type=int, default=None)
    parser.add_argument("--block-size", type=int, default=16)
    parser.add_argument("--max-num-batched-tokens", type=int, default=512)
    parser.add_argument("--no-prefix-caching", action="store_true")
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on /v1")
    parser.add_argument("--locale", default=None, choices=("en", "ja"),
                        help="language of the web page (default: the browser's language)")
    parser.add_argument("--cors-origin", action="append", default=[], help="allowed origin (repeatable)")
    parser.add_argument("--record", default=None, metavar="DIR",
                        help="record every generation for replay (Transformer Mock); 'auto' = the cache dir")
    parser.add_argument("--log-level", default=argparse.SUPPRESS, help="DEBUG | INFO | WARNING | ERROR")


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    from chatstream.http.app import ServerConfig

    options: dict[str, Any] = {
        "num_of_concurrent_executions": args.num_concurrent, "max_queue_size": args.max_queue,
        "max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "top_p": args.top_p,
        "dtype": args.dtype, "device": args.device, "block_size": args.block_size,
        "max_num_batched_tokens": args.max_num_batched_tokens, "enable_prefix_caching": not args.no_prefix_caching,
    }
    for key in ("max_model_len", "kv_cache_memory_gb", "num_kv_blocks", "quantization"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    # /chat_stream's context: None means the engine's whole max_model_len.
    options["context_len"] = args.context_len
    if args.record:
        options["record_to"] = True if args.record == "auto" else args.record
    return ServerConfig(model=args.model, chat_prompt=args.chat_prompt, model_name=args.served_model_name,
                        api_key=args.api_key, cors_origins=tuple(args.cors_origin), locale=args.locale,
                        chat_stream_options=options)


def startup_report(chat_stream: ChatStream, url: str, model_name: str) -> str:
    lines = [f"ChatStream is serving {model_name} on {chat_stream.device}",
             f"  web chat:   {url}/",
             f"  OpenAI API: {url}/v1  (model \"{model_name}\")",
             f"  native API: {url}/chat_stream   health: {url}/health   metrics: {url}/metrics"]
    admission = chat_stream.admission
    queue = f"up to {admission.max_running} run together, {admission.max_waiting} more may wait"
    if chat_stream.engine is None:  # mock responses: no engine, no cache
        return "\n".join(lines + [f"  mock responses; {queue}"])
    stats = chat_stream.engine.stats
    tokens, max_model_len = stats.kv_cache_tokens, stats.max_model_len
    lines.append(f"  KV cache: {stats.num_kv_blocks} blocks x {stats.block_size} tokens = {tokens} tokens "
                 f"({stats.kv_cache_bytes / GIB:.2f} GiB); {tokens / max_model_len:.1f} sequences of the full "
                 f"{max_model_len} tokens fit at once; {queue}")
    return "\n".join(lines)


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from chatstream.http.app import create_app

    config = config_from_args(args)
    url = f"http://{args.host}:{args.port}"
    model_name = config.served_model_name()

    def on_ready(chat_stream: ChatStream) -> None:
        print(startup_report(chat_stream, url, model_name), file=sys.stderr, flush=True)

    app = create_app(config, on_ready=on_ready)
    print(f"ChatStream: loading {model_name} ... (the API answers 503 until it is ready)", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=logging.getLevelName(
        logging.getLogger().getEffectiveLevel()).lower(), timeout_graceful_shutdown=5)
    return 0
