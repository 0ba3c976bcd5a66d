"""`chatstream serve`'s engine step options: `--max-num-seqs` (as in vLLM) and `--max-num-batched-tokens`
reach the engine, the start-up report says what a step may run, and a count below one is a usage error
before anything loads; `--model-impl` (as in vLLM) picks what holds the model."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pytest

from chatstream.engine.sampling_params import SamplingParams
from chatstream.facade.chat_stream import ChatStream
from chatstream.http.serve import add_serve_arguments, config_from_args, startup_report


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="chatstream serve", exit_on_error=False)
    add_serve_arguments(parser)
    return parser.parse_args(list(argv))


def _chat_stream(tiny_model_dir: Path, *argv: str) -> ChatStream:
    config = config_from_args(_parse("--model", str(tiny_model_dir), "--num-kv-blocks", "64", "--no-warmup", *argv))
    return ChatStream(model=str(tiny_model_dir), **config.chat_stream_options)


def _engine_stats(tiny_model_dir: Path, *argv: str):
    chat_stream = _chat_stream(tiny_model_dir, *argv)
    try:
        return chat_stream.engine.stats, startup_report(chat_stream, "http://127.0.0.1:1", "tiny")
    finally:
        chat_stream.shutdown()


def test_the_step_limits_reach_the_engine_and_the_report(tiny_model_dir: Path) -> None:
    stats, report = _engine_stats(tiny_model_dir, "--max-num-seqs", "5", "--max-num-batched-tokens", "96")
    assert (stats.max_num_seqs, stats.max_num_batched_tokens) == (5, 96)
    assert "engine steps: up to 5 sequences and 96 tokens each" in report


def test_without_max_num_seqs_a_step_runs_every_admitted_generation(tiny_model_dir: Path) -> None:
    few, _ = _engine_stats(tiny_model_dir, "--num-concurrent", "4")
    many, _ = _engine_stats(tiny_model_dir, "--num-concurrent", "100")
    assert (few.max_num_seqs, many.max_num_seqs) == (64, 100)


@pytest.mark.parametrize("flag", ["--max-num-seqs", "--max-num-batched-tokens", "--num-concurrent"])
@pytest.mark.parametrize("value", ["0", "-3", "many", "1.5"])
def test_a_count_below_one_or_not_a_number_is_a_usage_error(flag: str, value: str) -> None:
    with pytest.raises(argparse.ArgumentError, match=f"argument {flag}: expected a whole number >= 1, got"):
        _parse(flag, value)


def test_huge_step_limits_only_lift_the_caps(tiny_model_dir: Path) -> None:
    """Nothing is sized by the step limits: a huge value builds the same engine, and requests still run,
    bounded by the KV blocks."""
    chat_stream = _chat_stream(tiny_model_dir, "--max-num-seqs", str(10**12), "--max-num-batched-tokens", str(10**12))

    async def replies() -> list[int]:
        async def one(i: int) -> int:
            params = SamplingParams(max_tokens=5, temperature=0.0, ignore_eos=True)
            return sum([len(d.new_token_ids) async for d in chat_stream.engine.generate([3 + i, 4, 5], params)])

        return await asyncio.gather(*(one(i) for i in range(6)))

    try:
        assert chat_stream.engine.stats.num_kv_blocks == 64
        assert asyncio.run(replies()) == [5] * 6
        assert chat_stream.engine.stats.num_free_kv_blocks == 64
    finally:
        chat_stream.shutdown()


@pytest.mark.parametrize(("argv", "held"), [
    ((), "NativeCausalLM"),
    (("--model-impl", "native"), "NativeCausalLM"),
    (("--model-impl", "transformers"), "LlamaForCausalLM"),
])
def test_model_impl_reaches_the_engine(tiny_model_dir: Path, argv: tuple[str, ...], held: str) -> None:
    chat_stream = _chat_stream(tiny_model_dir, *argv)
    try:
        assert type(chat_stream.engine.core.model).__name__ == held
    finally:
        chat_stream.shutdown()


def test_an_unknown_model_impl_is_a_usage_error() -> None:
    with pytest.raises(argparse.ArgumentError, match="invalid choice: 'vllm'"):
        _parse("--model-impl", "vllm")
