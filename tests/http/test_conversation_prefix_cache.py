"""On the real SmolLM2, a 10-turn conversation through /chat_stream: from turn 2 on, every token of
the earlier turns but the last, partly filled block is found in the prefix cache (each prompt
continues the stored ids). The time to first token of each turn is printed, not asserted (the
README shows the table; examples/conversation_ttft.py measures it)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "conversation_ttft.py"
BLOCK_SIZE = 16  # the engine's default


def _example():
    spec = importlib.util.spec_from_file_location("conversation_ttft", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_every_earlier_turn_comes_from_the_prefix_cache(smollm2_dir: Path) -> None:
    example = _example()
    with example.served_smollm2(max_new_tokens=48) as url:
        figures = example.measure_turns(url)
    print("\n" + example.table(figures))
    assert len(figures) == 10
    assert figures[0].cached_tokens < figures[0].prompt_tokens
    for turn in figures[1:]:
        assert turn.earlier_tokens > 0 and turn.prompt_tokens > turn.earlier_tokens
        assert turn.cached_tokens >= turn.earlier_tokens - BLOCK_SIZE, turn
