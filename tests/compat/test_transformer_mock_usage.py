"""The Transformer Mock used the original's way: probe, then `MockTransformer("<recording name>")`.

Checks: `ChatStream(..., probe_mode_enabled=True)` records into the default place (the cache directory's
`recordings/<timestamp>`); `MockTransformer(name)` with just that name, from any working directory, finds it and
replays the same replies through `get_model()` / `get_tokenizer()` / `get_token_sampler()`; a path (absolute or
relative) and `parent_dir_path` still work; an unknown name fails naming where it looked. The original's module path
`chatstream.mock.mock_transformer` serves the same class.
Source: the original's Transformer Mock blog post and its 0.3.0 `chatstream.mock` package (the reference's section
11), and issue #34 of its repository (probe mode).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chatstream import ChatPromptTogetherRedPajamaINCITEChat, ChatStream
from chatstream.mock.mock_transformer import MockTransformer
from chatstream.mock.recording import RecordingError
from chatstream.testing import run_conversations

CONVERSATION = [["Hello there", "Tell me more"]]


@pytest.fixture
def probed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_factory: Any) -> tuple[Path, list[list[str]]]:
    monkeypatch.setenv("CHATSTREAM_CACHE_DIR", str(tmp_path / "cache"))
    model, tokenizer = tiny_model_factory("llama")
    chat_stream = ChatStream(model=model, tokenizer=tokenizer, chat_prompt_clazz=ChatPromptTogetherRedPajamaINCITEChat,
                             probe_mode_enabled=True, max_new_tokens=8)
    try:
        replies = run_conversations(chat_stream, CONVERSATION)
        assert chat_stream.recording_dir is not None
        return chat_stream.recording_dir, replies
    finally:
        chat_stream.shutdown()


def _replay(mock: MockTransformer) -> list[list[str]]:
    chat_stream = ChatStream(model=mock.get_model(), tokenizer=mock.get_tokenizer(),
                             token_sampler=mock.get_token_sampler(),
                             chat_prompt_clazz=ChatPromptTogetherRedPajamaINCITEChat, max_new_tokens=8)
    try:
        return run_conversations(chat_stream, CONVERSATION)
    finally:
        chat_stream.shutdown()


def test_probe_then_replay_by_name_from_anywhere(probed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recording_dir, replies = probed
    assert recording_dir.parent == tmp_path / "cache" / "recordings"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert _replay(MockTransformer(recording_dir.name)) == replies


def test_paths_and_parent_dir_path_still_work(probed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recording_dir, replies = probed
    assert _replay(MockTransformer(str(recording_dir))) == replies
    assert _replay(MockTransformer(recording_dir.name, parent_dir_path=recording_dir.parent)) == replies
    monkeypatch.chdir(recording_dir.parent.parent)
    assert MockTransformer(Path("recordings") / recording_dir.name).path == Path("recordings") / recording_dir.name


def test_an_unknown_name_says_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATSTREAM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RecordingError, match="no recording named 'nothing-here'") as info:
        MockTransformer("nothing-here")
    assert str(tmp_path / "cache" / "recordings" / "nothing-here") in str(info.value)
