"""The kernels' task sharing (`cpu_task_split.py`): whatever the thread count, and however far one thread
falls behind the others, every task runs exactly once, so the results are those of one thread, bit for bit
(each task writes its own outputs, in a fixed order within the task)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
import torch

from chatstream.engine.cpu_attention import load_decode_kernel
from chatstream.engine.cpu_panel_ops import pack_panels

THREAD_COUNTS = [2, 3, 7]  # even and odd shares; more threads than this machine's cores


@pytest.fixture()
def restore_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _with_a_busy_core(work: Callable[[], torch.Tensor], rounds: int = 20) -> list[torch.Tensor]:
    """`work` run `rounds` times while another thread keeps a core busy: some of the kernel's threads then fall
    behind and the others take over their tasks. The busy thread holds the GIL only between its bytecodes,
    and the kernels run without it."""
    stop = threading.Event()

    def burn() -> None:
        while not stop.is_set():
            sum(range(10_000))

    burner = threading.Thread(target=burn, daemon=True)
    burner.start()
    try:
        return [work() for _ in range(rounds)]
    finally:
        stop.set()
        burner.join()


@pytest.mark.parametrize("threads", THREAD_COUNTS)
def test_every_panel_task_runs_once_whatever_the_threads(cpu_ops, restore_threads, threads: int) -> None:
    if not cpu_ops.panel_kernel_available():
        pytest.skip("this CPU has no AVX-512: no panel kernel")
    gen = torch.Generator().manual_seed(threads)
    out_features = 16 * 2 * 37 + 5  # 38 tasks, the last one a partial panel
    panels = pack_panels(torch.randn(out_features, 96, generator=gen))
    x = torch.randn(45, 96, generator=gen)
    torch.set_num_threads(1)
    want = cpu_ops.panel_matmul(x, panels, out_features)
    torch.set_num_threads(threads)
    for got in _with_a_busy_core(lambda: cpu_ops.panel_matmul(x, panels, out_features)):
        assert torch.equal(got, want)


@pytest.mark.parametrize("threads", THREAD_COUNTS)
@pytest.mark.parametrize(("num_heads", "num_kv_heads", "head_dim"), [(9, 3, 64), (6, 1, 96)],
                         ids=["vector-path", "generic-loop"])
def test_every_decode_task_runs_once_whatever_the_threads(restore_threads, threads: int, num_heads: int,
                                                          num_kv_heads: int, head_dim: int) -> None:
    kernel = load_decode_kernel()
    if kernel is None:
        pytest.skip("no C++ compiler here: the engine uses SDPA")
    gen = torch.Generator().manual_seed(threads * 10 + head_dim)
    num_seqs, block_size, max_blocks, num_blocks = 23, 16, 6, 160
    k_cache = torch.randn(num_blocks, num_kv_heads, block_size, head_dim, generator=gen)
    v_cache = torch.randn(num_blocks, num_kv_heads, block_size, head_dim, generator=gen)
    tables = torch.stack([torch.randperm(num_blocks, generator=gen)[:max_blocks] for _ in range(num_seqs)])
    lens = torch.randint(1, max_blocks * block_size + 1, (num_seqs,), generator=gen)  # uneven tasks
    q = torch.randn(num_seqs, num_heads, head_dim, generator=gen)

    def attend() -> torch.Tensor:
        return kernel(q, k_cache, v_cache, tables, lens, head_dim**-0.5)

    torch.set_num_threads(1)
    want = attend()
    torch.set_num_threads(threads)
    for got in _with_a_busy_core(attend):
        assert torch.equal(got, want)
