"""The original ChatStream 0.3.0's module path `chatstream.resource_usage`, kept so code written for it imports unchanged.

`get_resource_usage({"num_gpus": n})`: this process's memory and each GPU's, in GB (what /get_resource_usage
reports).
"""

from collections.abc import Mapping
from typing import Any

from chatstream.facade.session_apis import resource_usage


def get_resource_usage(opts: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return resource_usage((opts or {}).get("num_gpus"))


__all__ = ["get_resource_usage"]
