"""`chatstream serve --replicas N [--ray-address ADDR]`: the server on Ray Serve.

Joins the Ray cluster at `--ray-address` (without it, starts a local Ray with this machine's
CPUs and GPUs), starts Ray Serve's HTTP proxy on `--host`/`--port`, deploys `build_app`'s
application, logs the `ready` line once every replica's model is loaded, and serves until
SIGINT/SIGTERM, when it shuts the application (and a Ray it started) down.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from typing import TYPE_CHECKING

from chatstream.startup import log_ready

if TYPE_CHECKING:
    from chatstream.http.app import ServerConfig

logger = logging.getLogger("chatstream.serve")
APP_NAME = "chatstream"


def add_replica_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--replicas", type=int, default=None, metavar="N",
                        help="serve with N engine replicas on Ray Serve (one per GPU, or a share of the CPUs); "
                             "needs chatstream[ray] and, for N > 1, --conversation-store redis://... "
                             "(default: one engine in this process, no Ray)")
    parser.add_argument("--ray-address", default=None, metavar="ADDR",
                        help="with --replicas: the Ray cluster to join, e.g. ray://head:10001 or auto "
                             "(default: start a local Ray)")


def run_replicated_serve(args: argparse.Namespace, config: ServerConfig) -> int:
    from chatstream.ray.app_builder import SharedStoreRequired, build_app, check_shared_store, require_ray

    try:
        check_shared_store(config.store_url(), args.replicas)
    except (SharedStoreRequired, ValueError) as exc:
        raise SystemExit(f"chatstream serve: {exc}") from None
    require_ray()
    import ray
    from ray import serve

    started_ray = not ray.is_initialized() and args.ray_address is None
    ray.init(address=args.ray_address, ignore_reinit_error=True, log_to_driver=False)
    url = f"http://{args.host}:{args.port}"
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        serve.run(build_app(config, replicas=args.replicas), name=APP_NAME, route_prefix="/")
        logger.info("ChatStream: %d replicas of %s deploying on Ray; %s answers 503 until one is ready",
                    args.replicas, config.served_model_name(), url)
        _wait_until_ready(url, args.replicas)
        _serve_until_signalled()
    finally:
        serve.delete(APP_NAME)
        if started_ray:
            serve.shutdown()
            ray.shutdown()
    return 0


def _wait_until_ready(url: str, replicas: int) -> None:
    """Until the ingress's /health lists every replica ready (a 503 body lists them too)."""
    import json
    import urllib.error
    import urllib.request

    import psutil

    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
        except (OSError, ValueError):
            body = {}
        if sum(r.get("status") == "ready" for r in body.get("replicas", [])) == replicas:
            log_ready(f"serving {replicas} replicas on {url}", time.time() - psutil.Process().create_time())
            return
        time.sleep(0.5)


def _serve_until_signalled() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
