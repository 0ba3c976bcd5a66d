"""`build_app`: the Ray Serve application of N engine replicas behind one ingress.

    from ray import serve
    from chatstream.http.app import ServerConfig
    from chatstream.ray import build_app

    app = build_app(ServerConfig(model="smollm2", conversation_store="redis://localhost:6379/0"), replicas=2)
    serve.run(app, name="chatstream", route_prefix="/")

Each replica is its own deployment (`engine-0`, `engine-1`, ...; one Ray Serve replica each) so
the ingress can choose the replica itself (Ray Serve's own router would spread a conversation's
turns over them). Resources per replica: one GPU when the cluster has a GPU per replica (the
multi-GPU pool), else an equal share of the cluster's CPUs, with torch's threads set to match.
Several replicas need a store they all reach (Redis): `check_shared_store` refuses the others.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chatstream.conversations import parse_store_url
from chatstream.http.session_secret import session_secret

if TYPE_CHECKING:
    from ray.serve import Application

    from chatstream.http.app import ServerConfig

INSTALL_HINT = "pip install 'chatstream[ray]'"
# Ray Serve's own per-replica limits would queue requests before our admission sees them: the
# replica's --num-concurrent / --max-queue line is the limit, so Ray Serve's is set out of the way.
MAX_ONGOING_REQUESTS = 100_000


class SharedStoreRequired(ValueError):
    """Several replicas were asked for with a store only one process can use."""


@dataclass(frozen=True)
class ReplicaResources:
    """What each replica deployment asks Ray for, and torch's threads in it (None: torch's default)."""

    num_cpus: float
    num_gpus: float = 0.0
    num_threads: int | None = None

    def actor_options(self) -> dict[str, Any]:
        return {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}


def require_ray() -> None:
    """Raises SystemExit naming the extra when Ray Serve is not installed."""
    try:
        import ray.serve  # noqa: F401
    except ImportError:
        raise SystemExit(f"serving several replicas needs Ray Serve: {INSTALL_HINT}") from None


def check_shared_store(store_url: str, replicas: int) -> None:
    if replicas < 1:
        raise ValueError(f"replicas must be at least 1, got {replicas}")
    kind = parse_store_url(store_url).kind
    if replicas > 1 and kind != "redis":
        raise SharedStoreRequired(
            f"{replicas} replicas need a conversation store they all share; {kind!r} is one process's. "
            "Use --conversation-store redis://HOST:PORT/DB (conversation_store='redis://...').")


def plan_resources(replicas: int, cluster: dict[str, float] | None = None) -> ReplicaResources:
    """One GPU per replica when the cluster has enough, else an equal share of its CPUs.
    `cluster`: `ray.cluster_resources()` (read when None and Ray is running)."""
    if cluster is None:
        import ray

        cluster = ray.cluster_resources() if ray.is_initialized() else {}
    gpus, cpus = cluster.get("GPU", 0.0), cluster.get("CPU", 1.0)
    if gpus >= replicas:
        return ReplicaResources(num_cpus=1.0, num_gpus=1.0)
    share = max(0.5, math.floor(2 * cpus / replicas) / 2)  # halves, so small machines still fit
    return ReplicaResources(num_cpus=share, num_threads=max(1, int(share)))


def build_app(config: ServerConfig, *, replicas: int = 2, resources: ReplicaResources | None = None,
              probe_interval_s: float = 1.0) -> Application:
    """The Ray Serve application: an ingress (the `chatstream serve` surface) in front of `replicas`
    engine replica deployments, each running the app `config` describes."""
    require_ray()
    from ray import serve

    from chatstream.ray.ingress import Ingress
    from chatstream.ray.replica import EngineReplica

    store_url = config.store_url()
    check_shared_store(store_url, replicas)
    # Every replica must sign and read the same session cookies.
    config = dataclasses.replace(config, session_secret=session_secret(config.session_secret, store_url))
    resources = resources or plan_resources(replicas)
    names = tuple(f"engine-{i}" for i in range(replicas))
    replica_deployment = serve.deployment(
        EngineReplica, max_ongoing_requests=MAX_ONGOING_REQUESTS, health_check_period_s=2.0,
        health_check_timeout_s=30.0, graceful_shutdown_timeout_s=5.0)
    bound = [replica_deployment.options(name=name, ray_actor_options=resources.actor_options())
             .bind(config, name, resources.num_threads) for name in names]
    ingress = serve.deployment(serve.ingress()(Ingress), name="ingress", max_ongoing_requests=MAX_ONGOING_REQUESTS,
                               ray_actor_options={"num_cpus": 0})
    return ingress.bind(*bound, names=names, store_url=store_url, store_options=config.store_options(),
                        probe_interval_s=probe_interval_s)
