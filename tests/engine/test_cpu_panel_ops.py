"""The compiled fp32 panel product against PyTorch's, and its use for a model's fp32 weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from chatstream.engine.cpu_panel_ops import pack_panels
from chatstream.engine.cpu_weights import PackedWeight, PanelWeight, prepack_linear_weights, prepacking_works
from chatstream.engine.linear_fusion import FusedMember
from chatstream.engine.model_weights import CpuMatmulSupport, describe_matmuls, prepare_weights
from chatstream.engine.weight_swap import is_swapped, kernel_of


@pytest.fixture(scope="module")
def panel_ops(cpu_ops):
    if not cpu_ops.panel_kernel_available():
        pytest.skip("this CPU has no AVX-512: fp32 weights stay with oneDNN")
    return cpu_ops


# Outputs in panels of 16, two per task (1, 15, 17, 33 and 40 leave partial or odd panels), rows in
# blocks of 8 then 4 then 1, and input widths with no relation to either.
@pytest.mark.parametrize("out_features", [1, 15, 16, 17, 33, 40])
@pytest.mark.parametrize("rows", [1, 3, 4, 5, 8, 9, 13, 33])
@pytest.mark.parametrize("in_features", [7, 100])
def test_panel_matmul_is_the_linear_product(panel_ops, out_features, rows, in_features):
    gen = torch.Generator().manual_seed(out_features * 100 + rows)
    weight = torch.randn(out_features, in_features, generator=gen)
    x = torch.randn(rows, in_features, generator=gen)
    got = panel_ops.panel_matmul(x, pack_panels(weight), out_features)
    assert got.shape == (rows, out_features) and got.is_contiguous()
    torch.testing.assert_close(got, F.linear(x, weight), atol=1e-5, rtol=1e-5)


# From 64 rows on, tasks are three panels by a block of 96 rows, in tiles of 8, then 4, then 1 rows: 40, 56
# and 100 outputs leave a last group of one, two or three partial panels; 64, 101 and 200 rows leave whole
# or partial tiles and blocks; strided rows as a prompt chunk's.
@pytest.mark.parametrize("out_features", [1, 40, 48, 56, 100])
@pytest.mark.parametrize("rows", [64, 101, 200])
def test_many_rows_take_the_wide_tasks_and_keep_the_product(panel_ops, out_features, rows):
    gen = torch.Generator().manual_seed(out_features * 1000 + rows)
    weight = torch.randn(out_features, 37, generator=gen)
    x = torch.randn(rows, 40, generator=gen)[:, 2:39]
    got = panel_ops.panel_matmul(x, pack_panels(weight), out_features)
    assert got.shape == (rows, out_features) and got.is_contiguous()
    torch.testing.assert_close(got, F.linear(x, weight), atol=1e-5, rtol=1e-5)
    bf16 = x.bfloat16()
    got16 = panel_ops.panel_matmul(bf16, pack_panels(weight), out_features)
    want16 = panel_ops.panel_matmul(bf16.float(), pack_panels(weight), out_features).bfloat16()
    assert torch.equal(got16.view(torch.int16), want16.view(torch.int16))


# The gated product: 64 rows and more with whole panels on each side (n = 16, 48: one or two gate panels in
# the last task) run fused; fewer rows, or n = 40 (the gate/up boundary inside a panel), are the two calls.
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n", [16, 40, 48])
@pytest.mark.parametrize("rows", [5, 64, 101])
def test_panel_gated_matmul_is_silu_of_the_gate_times_the_up_product(panel_ops, dtype, n, rows):
    gen = torch.Generator().manual_seed(n * 1000 + rows)
    weight = torch.randn(2 * n, 37, generator=gen)
    x = (torch.randn(rows, 40, generator=gen) * 3)[:, 1:38].to(dtype)
    panels = pack_panels(weight)
    got = panel_ops.panel_gated_matmul(x, panels, 2 * n)
    assert got.dtype == dtype and got.shape == (rows, n) and got.is_contiguous()
    # The two calls it replaces, up to the last bits (its exponential is a polynomial of a few ulp; in bf16 that
    # can move a result by one bf16 step); and the activation of HF's modules.
    separate = panel_ops.silu_mul(panel_ops.panel_matmul(x, panels, 2 * n))
    last_bits = 1e-6 if dtype == torch.float32 else 2 ** -7
    torch.testing.assert_close(got, separate, atol=1e-30, rtol=last_bits)
    product = F.linear(x.float(), weight).to(dtype)
    want = F.silu(product[:, :n]) * product[:, n:]
    tolerance = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else dict(atol=0.1, rtol=0.02)
    torch.testing.assert_close(got, want, **tolerance)


def test_panel_gated_matmul_rejects_an_odd_number_of_outputs(panel_ops):
    with pytest.raises(RuntimeError, match="even number"):
        panel_ops.panel_gated_matmul(torch.randn(70, 8), pack_panels(torch.randn(33, 8)), 33)


@pytest.mark.parametrize("rows", [1, 5, 9, 33])
@pytest.mark.parametrize("out_features", [15, 40])
def test_panel_matmul_takes_bf16_rows_and_rounds_its_fp32_sums_once(panel_ops, rows, out_features):
    gen = torch.Generator().manual_seed(rows * 100 + out_features)
    panels = pack_panels(torch.randn(out_features, 100, generator=gen).bfloat16().float())
    x = torch.randn(rows, 100, generator=gen).bfloat16()
    x[0, 3] = float("nan")  # the first row's results are NaN (PyTorch's own conversions disagree on NaN's bits)
    got = panel_ops.panel_matmul(x, panels, out_features)
    want = panel_ops.panel_matmul(x.float(), panels, out_features).bfloat16()
    assert got.dtype == torch.bfloat16 and got.shape == (rows, out_features)
    assert got[0].isnan().all() and want[0].isnan().all()
    assert torch.equal(got[1:].view(torch.int16), want[1:].view(torch.int16))  # bit for bit


def test_panel_weight_reads_strided_and_bf16_rows_and_unpacks_exactly(panel_ops):
    weight = torch.randn(40, 24, generator=torch.Generator().manual_seed(3))
    kernel = PanelWeight(weight, panel_ops)
    assert torch.equal(kernel.dense_weight(), weight)  # the panels hold the weight bit for bit
    wide = torch.randn(2, 6, 30)
    view = wide[..., 3:27]  # rows of a wider tensor, with leading dimensions
    torch.testing.assert_close(kernel(view), F.linear(view, weight), atol=1e-5, rtol=1e-5)
    rows = torch.randn(5, 24).bfloat16()
    got = kernel(rows)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), F.linear(rows.float(), weight), atol=2e-2, rtol=2e-2)


def test_panel_matmul_rejects_mismatched_panels(panel_ops):
    panels = pack_panels(torch.randn(20, 8))
    with pytest.raises(RuntimeError, match="pack_panels"):
        panel_ops.panel_matmul(torch.randn(2, 9), panels, 20)  # wrong input width
    with pytest.raises(RuntimeError, match="pack_panels"):
        panel_ops.panel_matmul(torch.randn(2, 8), panels, 40)  # more outputs than packed


@pytest.mark.skipif(not prepacking_works(), reason="oneDNN prepacking is not available here")
@pytest.mark.parametrize("tiny_family", ["llama", "qwen2", "gpt2"])
def test_model_weights_become_panels_and_keep_their_products(tiny_model, panel_ops) -> None:
    model, _ = tiny_model
    ids = torch.randint(3, model.config.vocab_size, (1, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(ids).logits
        dense = {k: v.clone() for k, v in model.state_dict().items()}
    count = prepack_linear_weights(model, ops=panel_ops)
    linears = [m for m in model.modules() if is_swapped(m) and not isinstance(m, torch.nn.Embedding)]
    assert count == len(linears) > 0
    kernels = [kernel_of(m) for m in linears]
    assert all(isinstance(k.group.kernel if isinstance(k, FusedMember) else k, PanelWeight) for k in kernels)
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, want, atol=1e-4, rtol=1e-4)
    saved = model.state_dict()
    for key, value in dense.items():
        torch.testing.assert_close(saved[key], value, atol=0, rtol=0, msg=key)


class _WithoutTiles:
    """The compiled ops as a CPU without AMX has them: no tile kernel."""

    def __init__(self, ops) -> None:
        self._ops = ops

    def tile_kernel_available(self) -> bool:
        return False

    def __getattr__(self, name: str):
        return getattr(self._ops, name)


_AVX512_BF16 = CpuMatmulSupport(amx_bf16=False, avx512_bf16=True, avx512=True)
_NO_BF16 = CpuMatmulSupport(amx_bf16=False, avx512_bf16=False, avx512=True)


@pytest.mark.skipif(not prepacking_works(torch.bfloat16), reason="no bf16 prepacking here")
def test_bf16_weights_with_avx512_bf16_but_no_amx_stay_with_onednn(tiny_model_factory, panel_ops) -> None:
    model, _ = tiny_model_factory("llama")
    assert prepare_weights(model, None, True, panel_ops) == "fp32 matmuls: compiled panel kernel, AVX-512"
    bf16, _ = tiny_model_factory("llama")
    bf16 = bf16.to(torch.bfloat16)
    line = prepare_weights(bf16, None, True, _WithoutTiles(panel_ops), _AVX512_BF16)
    assert line == "bf16 matmuls: oneDNN prepacked, AVX512-BF16"
    assert isinstance(kernel_of(bf16.model.layers[0].self_attn.o_proj), PackedWeight)
    cpu = torch.device("cpu")
    assert describe_matmuls(cpu, torch.float32, None, 10).startswith("fp32 matmuls: oneDNN prepacked")


@pytest.mark.skipif(not prepacking_works(), reason="oneDNN prepacking is not available here")
@pytest.mark.parametrize("tiny_family", ["llama", "qwen2"])
def test_bf16_weights_without_bf16_instructions_become_widened_panels(tiny_model, panel_ops) -> None:
    model, _ = tiny_model
    model = model.to(torch.bfloat16)
    embedding = model.get_input_embeddings()
    model.get_output_embeddings().weight = embedding.weight  # tied, as SmolLM2's checkpoint is
    ids = torch.randint(3, model.config.vocab_size, (1, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(ids).logits
        dense = {k: v.clone() for k, v in model.state_dict().items()}
    line = prepare_weights(model, None, True, _WithoutTiles(panel_ops), _NO_BF16)
    assert line.startswith("bf16 matmuls: compiled panel kernel, AVX-512, on bf16 weights widened to fp32")
    assert "no bf16 instructions" in line
    linears = [m for m in model.modules() if is_swapped(m) and not isinstance(m, torch.nn.Embedding)]
    kernels = [kernel_of(m) for m in linears]
    assert kernels and all(isinstance(k.group.kernel if isinstance(k, FusedMember) else k, PanelWeight)
                           for k in kernels)
    assert "weight" not in embedding._parameters  # the head's panels answer the lookups
    with torch.no_grad():
        assert torch.equal(embedding(ids), dense["model.embed_tokens.weight"][ids])  # bf16, bit for bit
        got = model(ids).logits
    assert got.dtype == torch.bfloat16
    # fp32 sums of the same bf16 values as the dense model's, in another order: equal within bf16's rounding.
    assert (got.argmax(-1) == want.argmax(-1)).float().mean() >= 0.9
    assert (got.float() - want.float()).abs().max() <= 0.1 * want.float().abs().max()
    saved = model.state_dict()
    for key, value in dense.items():
        assert saved[key].dtype == value.dtype and torch.equal(saved[key], value), key


def test_a_bf16_panel_weight_takes_and_gives_bf16_and_unpacks_exactly(panel_ops) -> None:
    weight = torch.randn(40, 24, generator=torch.Generator().manual_seed(5)).bfloat16()
    kernel = PanelWeight(weight, panel_ops)
    assert kernel.panels.dtype == torch.float32  # widened once, at load
    assert torch.equal(kernel.dense_weight(), weight) and kernel.dense_weight().dtype == torch.bfloat16
    ids = torch.tensor([[0, 39], [17, 16]])
    assert torch.equal(kernel.rows(ids), weight[ids])
    x = torch.randn(9, 24, generator=torch.Generator().manual_seed(6)).bfloat16()
    got = kernel(x)
    assert got.dtype == torch.bfloat16 and got.shape == (9, 40)
    # The exact products of the bf16 values summed in fp32, then rounded once to bf16.
    torch.testing.assert_close(got, F.linear(x.float(), weight.float()).bfloat16(), atol=1e-5, rtol=2 ** -7)


@pytest.mark.skipif(not prepacking_works(), reason="oneDNN prepacking is not available here")
@pytest.mark.parametrize("tiny_family", ["llama", "gpt2"])
def test_a_tied_head_in_panels_serves_the_embedding_and_keeps_the_matrix_once(tiny_model, panel_ops) -> None:
    model, _ = tiny_model
    embedding = model.get_input_embeddings()
    model.get_output_embeddings().weight = embedding.weight  # tied, as SmolLM2's checkpoint is
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(ids).logits
        table = embedding.weight.detach().clone()
    original = embedding.weight
    prepack_linear_weights(model, ops=panel_ops)

    assert "weight" not in embedding._parameters  # no dense copy kept for the lookups
    assert all(p is not original for p in model.parameters())
    assert model.get_output_embeddings().__dict__.get("_chatstream_tied_weight") is None  # nor the head
    with torch.no_grad():
        assert torch.equal(embedding(ids), table[ids])  # rows read out of the head's panels, bit for bit
        torch.testing.assert_close(model(ids).logits, want, atol=1e-4, rtol=1e-4)
    saved = model.state_dict()
    assert torch.equal(saved[[k for k in saved if k.endswith("wte.weight") or k.endswith("embed_tokens.weight")][0]],
                       table)
    for bad in (vocab, -1):
        with pytest.raises(IndexError, match="row ids"):
            embedding(torch.tensor([[1, bad]]))
    # Re-tied by someone else's code: the lookups follow the assigned tensor.
    embedding.weight = table * 2
    assert torch.equal(embedding(ids), table[ids] * 2)


@pytest.mark.skipif(not prepacking_works(), reason="oneDNN prepacking is not available here")
def test_an_untied_embedding_keeps_its_own_matrix(tiny_model_factory, panel_ops) -> None:
    model, _ = tiny_model_factory("llama")
    if model.get_output_embeddings().weight is model.get_input_embeddings().weight:
        model.get_output_embeddings().weight = torch.nn.Parameter(model.get_input_embeddings().weight.clone())
    prepack_linear_weights(model, ops=panel_ops)
    assert "weight" in model.get_input_embeddings()._parameters
