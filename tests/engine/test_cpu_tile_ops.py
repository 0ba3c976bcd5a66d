"""The compiled bf16 AMX tile product against PyTorch's, and its use for a model's bf16 weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from chatstream.engine.cpu_tile_ops import pack_tiles, tile_rows, unpack_tiles
from chatstream.engine.cpu_weights import PackedWeight, TileWeight, prepack_linear_weights, prepacking_works
from chatstream.engine.linear_fusion import FusedMember
from chatstream.engine.model_weights import cpu_matmul_support, prepare_weights
from chatstream.engine.weight_swap import is_swapped, kernel_of


@pytest.fixture(scope="module")
def tile_ops(cpu_ops):
    if not cpu_ops.tile_kernel_available():
        pytest.skip("this CPU has no AMX: no tile kernel for bf16 weights")
    return cpu_ops


def test_the_kernel_is_there_wherever_the_cpu_has_amx(cpu_ops) -> None:
    # A build that silently lost the tile kernel would send bf16 to oneDNN on exactly the CPUs it is for.
    assert bool(cpu_ops.tile_kernel_available()) == cpu_matmul_support().amx_bf16


def test_packing_round_trips_and_rows_read_back_exactly() -> None:
    gen = torch.Generator().manual_seed(5)
    for out_features in (1, 15, 16, 17, 40):
        weight = torch.randn(out_features, 64, generator=gen).bfloat16()
        tiles = pack_tiles(weight)
        assert tiles.shape == (-(-out_features // 16), 32, 16, 2)
        assert torch.equal(unpack_tiles(tiles, out_features), weight)
        ids = torch.tensor([[0, out_features - 1], [out_features // 2, 0]])
        assert torch.equal(tile_rows(tiles, ids), weight[ids])
    with pytest.raises(ValueError, match="multiple of 32"):
        pack_tiles(torch.zeros(4, 48, dtype=torch.bfloat16))


# Outputs in panels of 16, two per task (1, 15, 17, 33 and 40 leave partial or odd panels); rows in A tiles
# of 16 and blocks of 32 (1, 5, 16, 17, 33, 48 need padding or a lone block; 300 crosses a chunk of 256).
@pytest.mark.parametrize("out_features", [1, 15, 16, 17, 33, 40])
@pytest.mark.parametrize("rows", [1, 5, 16, 17, 33, 48, 300])
@pytest.mark.parametrize("in_features", [32, 96])
def test_tile_matmul_is_onednns_product_bit_for_bit(tile_ops, out_features, rows, in_features) -> None:
    gen = torch.Generator().manual_seed(out_features * 1000 + rows * 10 + in_features)
    weight = torch.randn(out_features, in_features, generator=gen).bfloat16()
    x = torch.randn(rows, in_features, generator=gen).bfloat16()
    got = tile_ops.tile_matmul(x, pack_tiles(weight), out_features)
    assert got.shape == (rows, out_features) and got.dtype == torch.bfloat16 and got.is_contiguous()
    # fp32 sums of the bf16 products, rounded once: what PyTorch's bf16 linear gives.
    assert torch.equal(got, F.linear(x, weight))
    torch.testing.assert_close(got.float(), x.float() @ weight.float().t(), atol=0.05, rtol=0.02)


def test_tile_weight_reads_strided_and_fp32_rows_and_refuses_bad_ids(tile_ops) -> None:
    weight = torch.randn(40, 64, generator=torch.Generator().manual_seed(3)).bfloat16()
    kernel = TileWeight(weight, tile_ops)
    assert torch.equal(kernel.dense_weight(), weight)
    wide = torch.randn(2, 6, 70).bfloat16()
    view = wide[..., 3:67]  # rows of a wider tensor, with leading dimensions
    assert torch.equal(kernel(view), F.linear(view, weight))
    rows = torch.randn(5, 64)
    got = kernel(rows)
    assert got.dtype == torch.float32
    assert torch.equal(got, F.linear(rows.bfloat16(), weight).float())
    assert kernel(torch.empty(0, 64).bfloat16()).shape == (0, 40)
    for bad in (40, -1):
        with pytest.raises(IndexError, match="row ids"):
            kernel.rows(torch.tensor([1, bad]))


def test_tile_matmul_rejects_mismatched_tiles(tile_ops) -> None:
    tiles = pack_tiles(torch.randn(20, 64).bfloat16())
    with pytest.raises(RuntimeError, match="pack_tiles"):
        tile_ops.tile_matmul(torch.randn(2, 96).bfloat16(), tiles, 20)  # wrong input width
    with pytest.raises(RuntimeError, match="pack_tiles"):
        tile_ops.tile_matmul(torch.randn(2, 64).bfloat16(), tiles, 40)  # more outputs than packed
    with pytest.raises(RuntimeError, match="bfloat16"):
        tile_ops.tile_matmul(torch.randn(2, 64), tiles, 20)


@pytest.mark.skipif(not prepacking_works(torch.bfloat16), reason="no bf16 prepacking here")
@pytest.mark.parametrize("tiny_family", ["llama", "qwen2"])
def test_bf16_model_weights_become_tiles_and_keep_their_logits(tiny_model, tile_ops) -> None:
    import copy

    model, _ = tiny_model
    model = model.to(torch.bfloat16)
    with_onednn = copy.deepcopy(model)
    ids = torch.randint(3, model.config.vocab_size, (1, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(ids).logits
        dense = {k: v.clone() for k, v in model.state_dict().items()}
    line = prepare_weights(model, None, True, tile_ops)
    assert line.startswith("bf16 matmuls: compiled AMX tile kernel")
    assert prepare_weights(with_onednn, None, True, None).startswith("bf16 matmuls: oneDNN prepacked")
    linears = [m for m in model.modules() if is_swapped(m) and not isinstance(m, torch.nn.Embedding)]
    kernels = [kernel_of(m) for m in linears]
    assert kernels and all(isinstance(k.group.kernel if isinstance(k, FusedMember) else k, TileWeight)
                           for k in kernels)
    with torch.no_grad():
        got = model(ids).logits
        # The same products as oneDNN's prepacked ones, so the same logits; against the dense model (which adds
        # Qwen2's q/k/v biases before rounding, not after) within bf16's rounding.
        assert torch.equal(got, with_onednn(ids).logits)
        assert (got.argmax(-1) == want.argmax(-1)).float().mean() >= 0.9
        assert (got.float() - want.float()).abs().max() <= 0.1 * want.float().abs().max()
    saved = model.state_dict()
    for key, value in dense.items():
        assert torch.equal(saved[key], value), key


@pytest.mark.skipif(not prepacking_works(torch.bfloat16), reason="no bf16 prepacking here")
def test_a_tied_bf16_head_in_tiles_serves_the_embedding_and_a_narrow_width_keeps_onednn(tiny_model_factory,
                                                                                         tile_ops) -> None:
    model, _ = tiny_model_factory("llama")
    model = model.to(torch.bfloat16)
    embedding = model.get_input_embeddings()
    model.get_output_embeddings().weight = embedding.weight  # tied, as SmolLM2's checkpoint is
    ids = torch.randint(0, model.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(1))
    table = embedding.weight.detach().clone()
    prepack_linear_weights(model, ops=tile_ops)
    assert "weight" not in embedding._parameters  # no dense copy kept for the lookups
    with torch.no_grad():
        assert torch.equal(embedding(ids), table[ids])  # rows read out of the head's tiles, bit for bit

    narrow = torch.nn.Sequential(torch.nn.Linear(48, 16, bias=False)).to(torch.bfloat16)  # 48: not a multiple of 32
    prepack_linear_weights(narrow, ops=tile_ops)
    assert isinstance(kernel_of(narrow[0]), PackedWeight)
