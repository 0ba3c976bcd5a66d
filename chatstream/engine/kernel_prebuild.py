"""Building the CPU attention kernel ahead, in a background thread, while the weights load.

The kernel (`cpu_attention.py`) is C++ compiled on the first start on a machine (tens of seconds,
cached by torch afterwards). Started before the weights load, its build overlaps the load; the
engine then finds it ready, or waits for the rest of the build with a line every few seconds, so a
first start has no silent gap. `chatstream warmup` builds it with no server at all.
"""

from __future__ import annotations

import threading

import torch

from chatstream.engine.cpu_attention import decode_kernel_is_loaded, load_decode_kernel
from chatstream.startup import StartupPhase


class KernelPrebuild:
    """The kernel's build, running in a daemon thread from construction on; `wait()` joins it."""

    def __init__(self) -> None:
        self.available: bool | None = None  # whether it built; None while building
        self._phase = StartupPhase("compile", "building the CPU paged-attention kernel (in the background)",
                                   progress=False)
        # setuptools, which the build imports, puts a finder at the head of `sys.meta_path` and takes it out
        # again; an import running in another thread at that moment can skip the path finder and fail with
        # ModuleNotFoundError (seen: the weights' loader missing safetensors' compiled module). Imported here,
        # before the build thread starts, that happens before the loading that follows, not during it.
        import torch.utils.cpp_extension  # noqa: F401

        self._thread = threading.Thread(target=self._build, name="chatstream-kernel-build", daemon=True)
        self._thread.start()

    def _build(self) -> None:
        with self._phase:
            self.available = load_decode_kernel() is not None

    def wait(self) -> bool:
        """Block until the build ended, saying so every few seconds; whether the kernel is usable."""
        if self._thread.is_alive():
            self._phase.show_progress("the weights are loaded; waiting for the kernel build")
        self._thread.join()
        return bool(self.available)


def prebuild_wanted(device: torch.device, cpu_attention_kernel: bool) -> bool:
    """Whether to build ahead: an engine on `device` may use the kernel (the CPU, with the kernel
    allowed) and this process has not loaded it yet."""
    return cpu_attention_kernel and device.type == "cpu" and not decode_kernel_is_loaded()
