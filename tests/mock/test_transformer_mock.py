"""Transformer Mock: record tiny random models through `LLM(record_to=...)`, replay them with no model.

Covers the recording files and manifest, exact replay (greedy and sampled) whatever the order and
batching (chunked prefill included), same-prompt recordings replayed in order, divergence errors,
torn temp files, version checks, the per-step wait, and that replay holds no weights or KV tensors.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from chatstream import LLM, SamplingParams
from chatstream.engine.config import EngineConfig
from chatstream.engine.engine_core import EngineCore
from chatstream.mock import MockTransformer, ReplayDivergence, ReplayModel
from chatstream.mock import replay as replay_module
from chatstream.mock.recording import Recording, RecordingError, default_recording_dir
from chatstream.mock.replay import ReplayEngineCore, ReplayKVCache, ReplayRunner

PROMPTS = [
    "The quick brown fox",
    "Once upon a time there was a little engine that served many requests at the same time, and then",
    "こんにちは、世界。",
    "def add(a, b):",
]
GREEDY = SamplingParams(temperature=0, max_tokens=12)
SAMPLED = SamplingParams(temperature=0.8, top_p=0.9, max_tokens=12)
# Small token budget and blocks: long prompts are chunked, many requests run in one batch.
ENGINE = {"num_kv_blocks": 128, "block_size": 4, "max_num_batched_tokens": 16}


def _texts_and_ids(outputs) -> list[tuple[str, list[int], str | None]]:
    return [(o.outputs[0].text, list(o.outputs[0].token_ids), o.outputs[0].finish_reason) for o in outputs]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, tiny_model_factory):
    """(recording dir, greedy outputs, sampled outputs, the recording tokenizer's prompt ids)."""
    path = tmp_path_factory.mktemp("recording") / "rec"
    model, tokenizer = tiny_model_factory("llama")
    llm = LLM(model, tokenizer, record_to=path, **ENGINE)
    assert llm.recording_dir == path and llm.engine.recording_dir == path
    greedy = llm.generate(PROMPTS, GREEDY)
    sampled = llm.generate(PROMPTS, SAMPLED)
    return path, _texts_and_ids(greedy), _texts_and_ids(sampled)


def test_recording_files_and_manifest(recorded) -> None:
    path, greedy, _sampled = recorded
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format"] == "chatstream-recording" and manifest["version"] == 1
    assert manifest["top_k_logits"] == 20 and manifest["tokenizer"] == "tokenizer"
    assert manifest["vocab_size"] == 512 and manifest["max_model_len"] == 512 and manifest["eos_token_ids"]
    assert manifest["created"] and manifest["model"]
    assert (path / "tokenizer" / "tokenizer.json").is_file()
    files = sorted((path / "requests").iterdir())
    assert [f.name for f in files] == [f"{i:06d}.safetensors" for i in range(2 * len(PROMPTS))]
    with safe_open(str(files[0]), framework="np") as f:
        meta = json.loads(f.metadata()["chatstream.request"])
        out, top_ids, top_logits = (f.get_tensor(n) for n in ("output_token_ids", "top_ids", "top_logits"))
    assert out.dtype == np.int64 and top_ids.dtype == np.int64 and top_logits.dtype == np.float32
    assert out.tolist() == greedy[0][1] and top_ids.shape == top_logits.shape == (len(out), 20)
    # Greedy: the recorded token is the model's best, and the top-K logits are sorted.
    assert (top_ids[:, 0] == out).all() and (np.diff(top_logits, axis=1) <= 0).all()
    assert meta["sampling_params"]["temperature"] == 0 and meta["finish_reason"] == greedy[0][2]
    assert meta["request_id"] and meta["prompt_token_ids"]


def test_replay_gives_identical_tokens_and_texts(recorded) -> None:
    path, greedy, sampled = recorded
    llm = LLM(model=MockTransformer(path), **ENGINE)
    assert _texts_and_ids(llm.generate(PROMPTS, GREEDY)) == greedy
    assert _texts_and_ids(llm.generate(PROMPTS, SAMPLED)) == sampled


def test_replay_is_independent_of_order_batching_and_sampling_settings(recorded) -> None:
    path, greedy, sampled = recorded
    mock = MockTransformer(path.name, parent_dir_path=path.parent)
    llm = LLM(model=mock.get_model(), tokenizer=mock.get_tokenizer(), max_num_seqs=3, **ENGINE)
    # Sampled recordings are the second of each prompt: replay the greedy ones first, in another order,
    # interleaved with others and with other (irrelevant) sampling settings.
    order = [3, 1, 0, 2]
    outs = llm.generate([PROMPTS[i] for i in order] + [PROMPTS[i] for i in order],
                        [SamplingParams(temperature=1.5, top_k=3, seed=7, max_tokens=12)] * 4 + [SAMPLED] * 4)
    got = _texts_and_ids(outs)
    assert got[:4] == [greedy[i] for i in order]
    assert got[4:] == [sampled[i] for i in order]


def test_same_prompt_recorded_twice_replays_in_order_and_cycles(tmp_path: Path, tiny_model_factory) -> None:
    model, tokenizer = tiny_model_factory("qwen2")
    llm = LLM(model, tokenizer, record_to=tmp_path / "rec", **ENGINE)
    params = SamplingParams(temperature=1.0, max_tokens=16)
    first = [llm.generate("How are you today?", params)[0] for _ in range(3)]
    first_ids = [list(o.outputs[0].token_ids) for o in first]
    assert len({tuple(i) for i in first_ids}) > 1  # sampling did differ

    replay = LLM(model=MockTransformer(tmp_path / "rec"), **ENGINE)
    again = replay.generate(["How are you today?"] * 4, SamplingParams(temperature=0, max_tokens=16))
    assert [list(o.outputs[0].token_ids) for o in again] == first_ids + first_ids[:1]


def test_a_changed_prompt_raises_replay_divergence(recorded) -> None:
    path, _greedy, _sampled = recorded
    mock = MockTransformer(path)
    core = ReplayEngineCore(mock.recording, mock.get_tokenizer(), EngineConfig(**ENGINE))
    tok = mock.get_tokenizer()
    good = tok(PROMPTS[0])["input_ids"]
    changed = good[:-1] + [(good[-1] + 1) % 512]
    with pytest.raises(ReplayDivergence) as info:
        core.add_request("chat-1a2b", changed, GREEDY)
    err = info.value
    assert isinstance(err, ValueError)
    assert (err.request_id, err.step, err.expected_token_id, err.actual_token_id) == (
        "chat-1a2b", len(good) - 1, good[-1], changed[-1])
    message = str(err)
    assert "'chat-1a2b'" in message and f"step {len(good) - 1}" in message
    assert f"expected token {good[-1]} ({tok.convert_ids_to_tokens(good[-1])!r})" in message
    assert f"got token {changed[-1]}" in message
    assert not core.has_unfinished_requests()

    # A prompt that runs past the end of a recorded chain: the recording has no step there.
    chain = list(core.runner.recording.requests[0].token_chain)
    with pytest.raises(ReplayDivergence) as info:
        core.add_request("chat-2", chain + [5], GREEDY)
    assert (info.value.step, info.value.expected_token_id, info.value.actual_token_id) == (len(chain), None, 5)
    assert "end of recording" in str(info.value)


def test_divergence_reaches_only_its_consumer_and_the_engine_lives(recorded) -> None:
    import asyncio

    from chatstream.engine.async_engine import AsyncEngine

    path, greedy, _sampled = recorded
    mock = MockTransformer(path)
    tok = mock.get_tokenizer()
    engine = AsyncEngine(ReplayEngineCore(mock.recording, tok, EngineConfig(**ENGINE)))

    async def run(prompt: str) -> list[int]:
        ids = []
        async for delta in engine.generate(tok(prompt)["input_ids"], GREEDY):
            ids.extend(delta.new_token_ids)
        return ids

    async def main():
        return await asyncio.gather(run("never recorded"), run(PROMPTS[1]), return_exceptions=True)

    try:
        bad, good = asyncio.run(main())
        assert isinstance(bad, ReplayDivergence) and good == greedy[1][1]
        assert engine.is_running
    finally:
        engine.shutdown()


def test_torn_temp_files_are_ignored_and_bad_versions_refused(recorded, tmp_path: Path) -> None:
    import shutil

    path, _greedy, _sampled = recorded
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    (copy / "requests" / ".000099.safetensors.tmp-123-abcd").write_bytes(b"\x00\x01half a file")
    (copy / ".tokenizer.tmp-1-2").mkdir()
    assert len(Recording.load(copy).requests) == 2 * len(PROMPTS)

    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "version": 2}))
    with pytest.raises(RecordingError, match="version 2"):
        MockTransformer(copy)
    (copy / "manifest.json").write_text(json.dumps({**manifest, "format": "something-else"}))
    with pytest.raises(RecordingError, match="not a ChatStream recording"):
        Recording.load(copy)
    with pytest.raises(RecordingError, match="does not exist"):
        MockTransformer("missing", parent_dir_path=tmp_path)


def test_wait_sec_sleeps_once_per_step(recorded, monkeypatch: pytest.MonkeyPatch) -> None:
    path, greedy, _sampled = recorded
    sleeps: list[float] = []
    monkeypatch.setattr(replay_module.time, "sleep", sleeps.append)
    llm = LLM(model=MockTransformer(path, wait_sec=0.25), **ENGINE)
    steps = 0
    original_step = llm.engine.step

    def counting_step():
        nonlocal steps
        steps += 1
        return original_step()

    monkeypatch.setattr(llm.engine, "step", counting_step)
    assert _texts_and_ids(llm.generate(PROMPTS[0], GREEDY)) == greedy[:1]
    assert sleeps == [0.25] * steps and steps >= len(greedy[0][1])


def test_replay_holds_no_model_and_no_kv_tensors(recorded) -> None:
    path, _greedy, _sampled = recorded
    llm = LLM(model=str(path), **ENGINE)  # a recording directory works as a model path too
    core = llm.engine
    # Replay is a runner plugged into the plain engine, not an engine of its own.
    assert type(core) is EngineCore and isinstance(core.runner, ReplayRunner)
    assert isinstance(core.model, ReplayModel) and core.model.eval().to("cuda") is core.model
    assert isinstance(core.kv_cache, ReplayKVCache) and core.kv_cache.size_bytes == 0
    assert not hasattr(core.kv_cache, "key_blocks") and not hasattr(core.runner, "model")


def test_replay_in_a_fresh_process_instantiates_no_model(recorded) -> None:
    path, greedy, _sampled = recorded
    code = (
        "import sys, torch\n"
        "from chatstream import LLM, SamplingParams\n"
        "from chatstream.mock import MockTransformer\n"
        "made = []\n"
        "init = torch.nn.Module.__init__\n"
        "def spy(self, *a, **k):\n"
        "    made.append(type(self).__name__)\n"
        "    init(self, *a, **k)\n"
        "torch.nn.Module.__init__ = spy\n"
        "llm = LLM(model=MockTransformer(sys.argv[1]), num_kv_blocks=32, block_size=4)\n"
        "out = llm.generate(sys.argv[2], SamplingParams(temperature=0, max_tokens=12))\n"
        "print(made, out[0].outputs[0].token_ids)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(path), PROMPTS[0]], capture_output=True, text=True,
                            check=True, timeout=120)
    assert result.stdout.strip() == f"[] {greedy[0][1]}"


def test_default_recording_dir_is_new_each_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATSTREAM_CACHE_DIR", str(tmp_path))
    first, second = default_recording_dir(), default_recording_dir()
    assert first.parent == second.parent == tmp_path / "recordings" and first != second
    assert first.is_dir() and second.name.startswith(first.name)


def test_record_to_true_and_an_aborted_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               tiny_model_factory) -> None:
    monkeypatch.setenv("CHATSTREAM_CACHE_DIR", str(tmp_path))
    model, tokenizer = tiny_model_factory("gpt2")
    llm = LLM(model, tokenizer, record_to=True, **ENGINE)
    assert llm.recording_dir is not None and llm.recording_dir.parent == tmp_path / "recordings"
    core = llm.engine
    ids = tokenizer("abort me")["input_ids"]
    core.add_request("a", ids, SamplingParams(temperature=0, max_tokens=50, ignore_eos=True))
    core.add_request("b", ids[:2], SamplingParams(temperature=0, max_tokens=50))
    for _ in range(4):
        core.step()
    core.abort_request("a")
    core.abort_request("b")
    requests = Recording.load(llm.recording_dir).requests
    assert [r.finish_reason for r in requests] == ["abort", "abort"]
    assert requests[0].output_token_ids and requests[0].top_ids.shape == (len(requests[0].output_token_ids), 20)
    # An aborted recording replays up to where it stopped, then ends as "length".
    out = LLM(model=MockTransformer(llm.recording_dir), **ENGINE).generate([ids], SamplingParams(max_tokens=50))
    assert list(out[0].outputs[0].token_ids) == list(requests[0].output_token_ids)
    assert out[0].outputs[0].finish_reason == "length"


def test_stop_tokens_replay_and_a_forbidding_min_tokens_diverges(tmp_path: Path, tiny_model_factory) -> None:
    model, tokenizer = tiny_model_factory("gpt2")
    prompt = tokenizer("The dog sleeps")["input_ids"]
    plain = LLM(model, tokenizer, **ENGINE).generate([prompt], GREEDY)[0].outputs[0].token_ids
    stop_id = plain[2]
    params = SamplingParams(temperature=0, max_tokens=12, stop_token_ids=[stop_id])
    recorded = LLM(model, tokenizer, record_to=tmp_path, **ENGINE).generate([prompt], params)[0].outputs[0]
    assert recorded.finish_reason == "stop" and recorded.token_ids[-1] == stop_id

    replay = LLM(model=MockTransformer(tmp_path), **ENGINE)
    again = replay.generate([prompt], params)[0].outputs[0]
    assert (again.token_ids, again.text, again.finish_reason) == (recorded.token_ids, recorded.text, "stop")
    step = len(prompt) + len(recorded.token_ids) - 1
    forbidding = SamplingParams(max_tokens=12, min_tokens=5, stop_token_ids=[stop_id])
    with pytest.raises(ReplayDivergence, match=f"step {step} .*min_tokens=5 forbids") as info:
        replay.generate([prompt, prompt], [params, forbidding])
    assert info.value.expected_token_id == stop_id and info.value.actual_token_id is None
    # The request accepted before the refused one was not left queued.
    assert not replay.engine.has_unfinished_requests()
    assert replay.generate([prompt], params)[0].outputs[0].token_ids == recorded.token_ids


def test_start_engine_records_and_replays(tmp_path: Path, tiny_model_factory) -> None:
    import asyncio

    from chatstream.facade.engine_setup import start_engine

    model, tokenizer = tiny_model_factory("llama")
    ids = tokenizer(PROMPTS[0])["input_ids"]

    async def collect(engine) -> list[int]:
        return [t async for d in engine.generate(ids, GREEDY) for t in d.new_token_ids]

    started = start_engine(model, tokenizer, None, 42, 4, dict(ENGINE), record_to=tmp_path)
    engine, tok = started.engine, started.tokenizer
    try:
        assert started.recording_dir == engine.core.recording_dir == tmp_path and tok is tokenizer
        recorded = asyncio.run(collect(engine))
    finally:
        engine.shutdown()
    mock = MockTransformer(tmp_path)
    started = start_engine(mock.get_model(), None, "cuda", 42, 4, dict(ENGINE))
    engine, tok, device = started.engine, started.tokenizer, started.device
    try:
        assert isinstance(engine.core.runner, ReplayRunner) and device.type == "cpu" and started.recording_dir is None
        assert tok.convert_ids_to_tokens(ids) == tokenizer.convert_ids_to_tokens(ids)
        assert asyncio.run(collect(engine)) == recorded
    finally:
        engine.shutdown()
