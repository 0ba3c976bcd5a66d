"""Serving on Ray Serve: several engine replicas (a GPU pool, or several machines) behind one address.

`build_app(config, replicas=N)` gives the Ray Serve application; `chatstream serve --replicas N`
runs it. Ray is an optional extra (`pip install 'chatstream[ray]'`): nothing here imports it
until an application is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chatstream.ray.app_builder import ReplicaResources, build_app

__all__ = ["ReplicaResources", "build_app"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from chatstream.ray import app_builder

        return getattr(app_builder, name)
    raise AttributeError(f"module 'chatstream.ray' has no attribute {name!r}")
