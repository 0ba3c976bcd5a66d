"""The compiled int8 weight product against the dequantized product, and its use by int8 linear weights."""

from __future__ import annotations

import pytest
import torch

from chatstream.engine.quantization import INT8_KERNEL_MAX_ROWS, Int8Weight, quantize_per_channel



# Output channels in blocks of four (37, 38 and 1031 leave one to three over), inputs in vectors of
# sixteen (100 leaves four over), and a weight larger than the kernel's prefetch distance.
@pytest.mark.parametrize("shape", [(37, 96), (38, 100), (1031, 576)])
@pytest.mark.parametrize("rows", [1, 3, 4, 5, 8, 15])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_int8_matmul_is_the_dequantized_product(cpu_ops, shape, rows, dtype):
    gen = torch.Generator().manual_seed(rows)
    qweight, scales = quantize_per_channel(torch.randn(*shape, generator=gen))
    x = torch.randn(rows, shape[1], generator=gen).to(dtype)
    want = x.float() @ (qweight.float() * scales[:, None]).T  # in fp32, as the kernel accumulates
    got = cpu_ops.int8_matmul(x, qweight, scales)
    assert got.dtype == dtype and got.shape == (rows, shape[0])
    tolerance = 1e-4 if dtype == torch.float32 else 2e-2  # bf16: only the output's rounding
    torch.testing.assert_close(got.float(), want, atol=tolerance, rtol=tolerance)


def test_int8_matmul_reads_rows_of_a_wider_tensor(cpu_ops):
    qweight, scales = quantize_per_channel(torch.randn(8, 16))
    wide = torch.randn(3, 40)
    torch.testing.assert_close(cpu_ops.int8_matmul(wide[:, 4:20], qweight, scales),
                               cpu_ops.int8_matmul(wide[:, 4:20].contiguous(), qweight, scales))


def test_int8_weights_use_the_kernel_for_few_rows_and_agree_with_pytorchs_path(cpu_ops):
    weight = torch.randn(64, 48, generator=torch.Generator().manual_seed(5))
    ours, theirs = Int8Weight(weight, cpu_ops), Int8Weight(weight)
    calls = []
    kernel = cpu_ops.int8_matmul
    ours.ops = type("Counting", (), {"int8_matmul": lambda self, *a: calls.append(1) or kernel(*a)})()
    for rows in (1, 4, INT8_KERNEL_MAX_ROWS - 1, INT8_KERNEL_MAX_ROWS, 40):
        x = torch.randn(2, rows, 48)[0]
        # PyTorch's path rounds activations to bf16; ours keeps fp32: they agree to bf16's precision.
        torch.testing.assert_close(ours(x), theirs(x), atol=0.1, rtol=0.02)
    assert len(calls) == 3  # the products under INT8_KERNEL_MAX_ROWS rows
