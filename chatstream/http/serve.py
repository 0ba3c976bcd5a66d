"""`chatstream serve`: arguments, the start-up report, and uvicorn.

Options become one frozen `ServerConfig`; `create_app` builds the app and uvicorn serves it on
one worker (the model, the queue and the sessions live in this process). The model loads in the
background, one logged phase after the other (convert, load, compile, warmup: see
`chatstream.startup`); once it is ready the command logs the `ready` line, where to find the page
and the API, and how much KV cache there is. Everything goes through logging, so `--log-format
json` makes every line of the server JSON, uvicorn's included.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

from chatstream.commands.argument_types import positive_int
from chatstream.facade.request_limits import DEFAULT_BODY_TIMEOUT_SEC, DEFAULT_MAX_REQUEST_BYTES
from chatstream.http.connection_limits import DEFAULT_HEADER_TIMEOUT_SEC
from chatstream.http.drain import DEFAULT_SHUTDOWN_TIMEOUT_SEC
from chatstream.http.metrics_vllm import METRIC_NAME_SETS
from chatstream.startup import StartupPhase, log_ready

if TYPE_CHECKING:
    from chatstream.facade.chat_stream import ChatStream
    from chatstream.http.app import ServerConfig

GIB = 1024 ** 3
logger = logging.getLogger("chatstream.serve")
API_KEY_ENV = "CHATSTREAM_API_KEY"


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="smollm2",
                        help="local HF directory, hub id, 'smollm2' (the bundled SmolLM2-135M-Instruct), or a "
                             "recording directory (replayed without weights)")
    parser.add_argument("--chat-prompt", default="chat_template",
                        help="ChatPrompt preset name (default: the model's own chat template)")
    parser.add_argument("--served-model-name", default=None,
                        help="model id shown by /v1/models and in metrics (default: the model directory's name)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    parser.add_argument("--num-concurrent", type=positive_int, default=16,
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
    parser.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda if available)")
    parser.add_argument("--model-impl", default="auto", choices=["auto", "native", "transformers"],
                        help="what holds the model: ChatStream's Llama-family modules (native; less memory), "
                             "transformers' classes, or auto: native where it applies (default: auto)")
    parser.add_argument("--max-model-len", type=int, default=None,
                        help="prompt + reply tokens one request may reach (default: the model's own)")
    parser.add_argument("--kv-cache-memory-gb", type=float, default=None,
                        help="KV cache budget (default: sized for the machine)")
    parser.add_argument("--num-kv-blocks", type=int, default=None,
                        help="exact number of KV blocks (overrides --kv-cache-memory-gb)")
    parser.add_argument("--block-size", type=int, default=16, help="tokens per KV cache block")
    parser.add_argument("--max-num-seqs", type=positive_int, default=None,
                        help="sequences one engine step may run (default: the larger of --num-concurrent and 64)")
    parser.add_argument("--max-num-batched-tokens", type=positive_int, default=512,
                        help="tokens one engine step may run")
    parser.add_argument("--no-prefix-caching", action="store_true", help="do not share KV blocks of equal prefixes")
    parser.add_argument("--no-warmup", action="store_true",
                        help="skip the warm-up request at start-up (the first user then pays its cost)")
    parser.add_argument("--api-key", default=os.environ.get(API_KEY_ENV) or None,
                        help=f"require this key on every route but /health ('Authorization: Bearer KEY', or the "
                             f"page's login form); default: ${API_KEY_ENV}")
    parser.add_argument("--conversation-store", default=None, metavar="URL",
                        help="where conversations and sessions are kept: sqlite:///PATH, redis://HOST:PORT/DB or "
                             "memory (default: an SQLite file in the user's data directory)")
    parser.add_argument("--conversation-ttl", type=float, default=None, metavar="DAYS",
                        help="delete conversations not updated for this many days (default: keep them)")
    parser.add_argument("--max-waiting-per-session", type=int, default=None, metavar="N",
                        help="/chat_stream requests one session may keep waiting for their conversations "
                             "(default: only --max-queue bounds them)")
    parser.add_argument("--session-secret", default=None,
                        help="key that signs session cookies (default: $CHATSTREAM_SESSION_SECRET, else one kept "
                             "in the user's data directory; servers sharing a store need the same)")
    parser.add_argument("--max-request-bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES,
                        help="largest request body; a larger one is a 413 (default: 4 MiB)")
    parser.add_argument("--body-timeout", type=float, default=DEFAULT_BODY_TIMEOUT_SEC,
                        help="seconds a request body may take to arrive; then 408")
    parser.add_argument("--header-timeout", type=float, default=DEFAULT_HEADER_TIMEOUT_SEC,
                        help="seconds a request head may take to arrive; then the connection is closed")
    parser.add_argument("--shutdown-timeout", type=float, default=DEFAULT_SHUTDOWN_TIMEOUT_SEC,
                        help="on SIGTERM, seconds running requests may go on before their streams are cut")
    parser.add_argument("--allowed-host", action="append", default=None,
                        help="Host header value to serve (repeatable; default: the loopback names when bound to "
                             "a loopback address, else any)")
    parser.add_argument("--locale", default=None, choices=("en", "ja"),
                        help="language of the web page (default: the browser's language)")
    parser.add_argument("--cors-origin", action="append", default=[], help="allowed origin (repeatable)")
    parser.add_argument("--record", default=None, metavar="DIR",
                        help="record every generation for replay (Transformer Mock); 'auto' = the cache dir "
                             "(default: off)")
    parser.add_argument("--metrics-names", default="both", choices=METRIC_NAME_SETS,
                        help="names on /metrics: chatstream:*, the vllm:* names that dashboards made for vLLM "
                             "expect, or both")


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    from chatstream.http.app import ServerConfig

    options: dict[str, Any] = {
        "num_of_concurrent_executions": args.num_concurrent, "max_queue_size": args.max_queue,
        "max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "top_p": args.top_p,
        "dtype": args.dtype, "device": args.device, "model_impl": args.model_impl, "block_size": args.block_size,
        "max_num_batched_tokens": args.max_num_batched_tokens, "enable_prefix_caching": not args.no_prefix_caching,
    }
    for key in ("max_model_len", "max_num_seqs", "kv_cache_memory_gb", "num_kv_blocks", "quantization"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    # /chat_stream's context: None means the engine's whole max_model_len.
    options["context_len"] = args.context_len
    options["warmup"] = not args.no_warmup
    if args.record:
        options["record_to"] = True if args.record == "auto" else args.record
    if args.max_waiting_per_session is not None:
        options["max_waiting_per_session"] = args.max_waiting_per_session
    if args.conversation_ttl is not None and args.conversation_ttl <= 0:
        raise SystemExit(f"chatstream serve: --conversation-ttl must be a positive number of days, "
                         f"got {args.conversation_ttl}")
    return ServerConfig(model=args.model, chat_prompt=args.chat_prompt, model_name=args.served_model_name,
                        api_key=args.api_key, cors_origins=tuple(args.cors_origin), locale=args.locale,
                        metrics_names=args.metrics_names, conversation_store=args.conversation_store,
                        conversation_ttl_days=args.conversation_ttl, session_secret=args.session_secret,
                        chat_stream_options=options, max_request_bytes=args.max_request_bytes,
                        body_timeout=args.body_timeout, shutdown_timeout=args.shutdown_timeout,
                        allowed_hosts=allowed_hosts(args.host, args.allowed_host))


def allowed_hosts(bind_host: str, given: list[str] | None) -> tuple[str, ...]:
    """The Host header values to serve: the given ones; else, bound to loopback, the loopback names
    (a web page whose name resolves to 127.0.0.1 then cannot read this server: DNS rebinding);
    else any."""
    if given:
        return tuple(given)
    try:
        loopback = ipaddress.ip_address(bind_host.strip("[]")).is_loopback
    except ValueError:
        loopback = bind_host == "localhost"
    return ("localhost", "127.0.0.1", "::1", "[::1]") if loopback else ()


def model_problem(model: str) -> str | None:
    """Why `--model` cannot be loaded, when that is plain before loading: a path that does not exist.
    (A hub id, `org/name`, is left to the loader.)"""
    if model.lower() == "smollm2" or os.path.exists(os.path.expanduser(model)):
        return None
    looks_like_path = (model.startswith(("/", ".", "~")) or model.count("/") != 1 or model.endswith("/")
                       or os.sep != "/" and os.sep in model)
    if looks_like_path:
        return f"--model {model!r}: no such file or directory"
    return None


def bind_socket(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the model loads, so a taken port fails at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


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
    lines.append(f"  engine steps: up to {stats.max_num_seqs} sequences and {stats.max_num_batched_tokens} tokens "
                 "each")
    return "\n".join(lines)


def _seconds_since_process_start() -> float:
    import psutil

    return max(0.0, time.time() - psutil.Process().create_time())


def run_serve(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT (which drains, see `chatstream.http.drain`); exit status 1, with
    one line on stderr, when the server cannot start: a model path that does not exist, a port
    that is taken (both found before the model loads), a model that fails to load."""
    problem = model_problem(args.model)
    if problem is not None:
        print(f"ChatStream: cannot start: {problem}", file=sys.stderr, flush=True)
        return 1
    with StartupPhase("import", "importing torch, transformers and the server"):
        import uvicorn

        from chatstream.commands.logging_setup import quiet_library_bars
        from chatstream.http.app import create_app
        from chatstream.http.connection_limits import header_timeout_protocol
        from chatstream.http.drain import DrainingServer

    quiet_library_bars()
    config = config_from_args(args)
    from chatstream.conversations import StoreConfigError, parse_store_url, redacted

    try:
        parse_store_url(config.store_url())  # a bad URL stops here, before the model loads
    except StoreConfigError as exc:
        raise SystemExit(f"chatstream serve: {exc}") from None
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        print(f"ChatStream: cannot start: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
              file=sys.stderr, flush=True)
        return 1
    url = f"http://{args.host}:{sock.getsockname()[1]}"
    model_name = config.served_model_name()
    server: DrainingServer | None = None
    failure: list[BaseException] = []

    def on_ready(chat_stream: ChatStream) -> None:
        log_ready(f"serving {model_name} on {url}", _seconds_since_process_start())
        logger.info("%s", startup_report(chat_stream, url, model_name))

    def on_failed(exc: BaseException) -> None:
        failure.append(exc)
        print(f"ChatStream: cannot start: the model {args.model!r} did not load: {type(exc).__name__}: {exc}",
              file=sys.stderr, flush=True)
        if server is not None:
            server.should_exit = True

    app = create_app(config, on_ready=on_ready, on_failed=on_failed)
    logger.info("ChatStream: loading %s ... (the API answers 503 until it is ready); conversations in %s",
                model_name, redacted(config.store_url()))
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
    # log_config=None: uvicorn's records go through the process's one handler (text or JSON).
    uvicorn_config = uvicorn.Config(app, log_config=None, log_level=level,
                                    http=header_timeout_protocol(args.header_timeout),
                                    timeout_keep_alive=5, timeout_graceful_shutdown=5)
    server = DrainingServer(uvicorn_config, app.state.server.drain)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 1 if failure else 0
