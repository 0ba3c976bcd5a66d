"""The `chatstream.testing` helpers: record conversations once on a model, replay them anywhere."""

from __future__ import annotations

from chatstream import ChatPromptTogetherRedPajamaINCITEChat, ChatStream
from chatstream.testing import ensure_recording, record_conversations, replay_chat_stream, run_conversations

CONVERSATIONS = [["hello there", "and then?"], ["tell me something"]]
OPTIONS = {"chat_prompt_clazz": ChatPromptTogetherRedPajamaINCITEChat, "max_new_tokens": 12, "temperature": 0.9,
           "num_kv_blocks": 64}


def test_replay_gives_the_replies_of_the_recorded_run(tiny_model_factory, tmp_path):
    model, tokenizer = tiny_model_factory("llama")
    recording_run = ChatStream(model=model, tokenizer=tokenizer, record_to=tmp_path / "rec", **OPTIONS)
    try:
        recorded = run_conversations(recording_run, CONVERSATIONS)
    finally:
        recording_run.shutdown()
    chat_stream = replay_chat_stream(tmp_path / "rec", **OPTIONS)
    try:
        assert run_conversations(chat_stream, CONVERSATIONS) == recorded  # sampled at temperature 0.9
    finally:
        chat_stream.shutdown()


def test_record_conversations_and_ensure_recording(tiny_model_factory, tmp_path):
    model, tokenizer = tiny_model_factory("llama")
    recording = record_conversations(model, CONVERSATIONS, tmp_path / "rec", tokenizer=tokenizer, **OPTIONS)
    assert recording == tmp_path / "rec" and (recording / "manifest.json").is_file()
    files = sorted((recording / "requests").iterdir())
    assert len(files) == 3  # one per turn
    # An existing recording is kept as it is, and no model is needed for that.
    assert ensure_recording(recording, model=None, conversations=CONVERSATIONS) == recording
    assert sorted((recording / "requests").iterdir()) == files


def test_probe_mode_records_under_the_cache_dir(tiny_model_factory, tmp_path, monkeypatch):
    monkeypatch.setenv("CHATSTREAM_CACHE_DIR", str(tmp_path))
    model, tokenizer = tiny_model_factory("llama")
    chat_stream = ChatStream(model=model, tokenizer=tokenizer, probe_mode_enabled=True, **OPTIONS)
    try:
        run_conversations(chat_stream, [["hello"]])
        recording_dir = chat_stream.recording_dir
    finally:
        chat_stream.shutdown()
    assert recording_dir.parent == tmp_path / "recordings"  # named by time: YYYYmmdd-HHMMSS
    assert len(list((recording_dir / "requests").iterdir())) == 1
