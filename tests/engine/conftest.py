"""Fixtures of the engine's tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def cpu_ops():
    """The compiled CPU operations (fused layer ops, int8 product); skips where no compiler can build them."""
    from chatstream.engine.cpu_attention import load_cpu_ops

    built = load_cpu_ops()
    if built is None:
        pytest.skip("no C++ compiler here: the engine runs PyTorch's operations instead")
    return built
