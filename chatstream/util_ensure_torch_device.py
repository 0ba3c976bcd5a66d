"""The original ChatStream 0.3.0's module path `chatstream.util_ensure_torch_device`, kept so code written for it imports unchanged.

`ensure_torch_device(device)`: None stays None, a name becomes a `torch.device`, a name torch does not know is None.
"""

from typing import Any

import torch


def ensure_torch_device(device: Any) -> torch.device | None:
    if device is None or isinstance(device, torch.device):
        return device
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        return None


__all__ = ["ensure_torch_device"]
