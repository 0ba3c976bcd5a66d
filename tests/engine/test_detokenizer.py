"""Tests for chatstream.engine.detokenizer: incremental text equals a full decode, no broken characters in any
delta, stop strings never leak (even split over tokens), include_stop_str_in_output and skip_special_tokens.

Tokenizers: a byte-level BPE and a SentencePiece-style byte-fallback BPE trained here on an ASCII corpus (so Japanese
and emoji are split into byte tokens), "slow" views of both (forcing the offset-based fallback), and SmolLM2's.
"""

from __future__ import annotations

import functools
import json
import random
import tracemalloc
from typing import Any

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from chatstream.engine.detokenizer import IncrementalDetokenizer
from chatstream.engine.sampling_params import SamplingParams

_CORPUS = [
    "Hello world, the quick brown fox jumps over the lazy dog.",
    "The answer is forty two, said the computer to the crowd.",
    "Streaming text arrives one token at a time, and nobody likes broken characters.",
] * 3
END = "<|end|>"
PROMPT = "Hello there, here is a question"
MULTIBYTE_TEXTS = ["こんにちは世界、日本語です。", "Party 🎉👍🏽🇯🇵 time ❤️", "mixed 日本語 and emoji 😀 text ✓"]
STOP_TEXT = "Hello world! The answer is 42. STOP here, then more text follows."


@functools.cache
def _byte_level_json() -> str:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=[END], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    return tok.to_str()


@functools.cache
def _byte_fallback_json() -> str:
    """Llama-style: Metaspace pieces, <0xXX> byte tokens for anything unseen, decoder strips the first space."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    trainer = trainers.BpeTrainer(vocab_size=150, special_tokens=["<unk>", END], show_progress=False)
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    # The trainer cannot add byte tokens as ordinary (non-special) pieces, so add them to the model's vocab directly.
    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    first = max(vocab.values()) + 1
    vocab.update({f"<0x{b:02X}>": first + b for b in range(256)})
    data["model"]["byte_fallback"] = True
    return json.dumps(data)


def _fast(kind: str) -> PreTrainedTokenizerFast:
    raw = Tokenizer.from_str(_byte_level_json() if kind == "byte_level" else _byte_fallback_json())
    return PreTrainedTokenizerFast(tokenizer_object=raw, eos_token=END)


class SlowView:
    """A fast tokenizer seen through the slow-tokenizer interface only, to exercise the offset-based fallback."""

    is_fast = False

    def __init__(self, fast: PreTrainedTokenizerFast) -> None:
        self.fast = fast

    def convert_ids_to_tokens(self, ids: list[int], skip_special_tokens: bool = False) -> list[str]:
        return self.fast.convert_ids_to_tokens(ids, skip_special_tokens=skip_special_tokens)

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return self.fast.convert_tokens_to_string(tokens)

    def __len__(self) -> int:
        return len(self.fast)


TOKENIZERS = ["byte_level", "byte_fallback", "byte_level_slow", "byte_fallback_slow", "smollm2"]


@pytest.fixture(params=TOKENIZERS)
def tokenizer(request: pytest.FixtureRequest) -> Any:
    if request.param == "smollm2":
        return request.getfixturevalue("smollm2_tokenizer")
    fast = _fast(request.param.removesuffix("_slow"))
    return SlowView(fast) if request.param.endswith("_slow") else fast


def _hf(tok: Any) -> Any:
    return tok.fast if isinstance(tok, SlowView) else tok


def encode(tok: Any, text: str) -> list[int]:
    return _hf(tok).encode(text, add_special_tokens=False)


def reference(tok: Any, prompt: list[int], output: list[int], skip: bool = True) -> str:
    """The output's text as a one-shot decode sees it, with the prompt as context (keeps a leading '▁' space)."""
    hf = _hf(tok)
    full = hf.decode(prompt + output, skip_special_tokens=skip, clean_up_tokenization_spaces=False)
    return full[len(hf.decode(prompt, skip_special_tokens=skip, clean_up_tokenization_spaces=False)) :]


def stream(
    tok: Any, prompt: list[int], output: list[int], **params: Any
) -> tuple[list[str], IncrementalDetokenizer, str | None]:
    """Feed tokens one at a time like the engine does; returns every delta, the detokenizer and the matched stop."""
    detok = IncrementalDetokenizer(tok, prompt, SamplingParams(**params))
    deltas: list[str] = []
    for token_id in output:
        stop = detok.update([token_id])
        deltas.append(detok.take_delta(finished=stop is not None))
        if stop is not None:
            return deltas, detok, stop
    deltas.append(detok.take_delta(finished=True))
    return deltas, detok, None


@pytest.mark.parametrize("skip", [True, False])
def test_random_tokens_match_full_decode(tokenizer: Any, skip: bool) -> None:
    hf = _hf(tokenizer)
    prompt = encode(tokenizer, PROMPT)
    # Random byte-fallback ids form invalid byte runs whose U+FFFD grouping depends on the neighbours, so no streaming
    # decoder can match a full decode there; draw only from whole pieces for that tokenizer. (<unk> is left out as the
    # slow and fast interfaces disagree on whether skip_special_tokens drops it.)
    pool = [i for t, i in hf.get_vocab().items() if not t.startswith("<0x") and t != "<unk>"]
    rng = random.Random(1234)
    for _ in range(8):
        output = [rng.choice(pool) for _ in range(40)]
        deltas, detok, _ = stream(tokenizer, prompt, output, skip_special_tokens=skip)
        # A character left incomplete by the last token is dropped rather than shown as U+FFFD.
        expected = reference(tokenizer, prompt, output, skip).rstrip("\ufffd")
        assert "".join(deltas) == detok.output_text == expected


def test_garbled_byte_runs_do_not_crash(tokenizer: Any) -> None:
    rng = random.Random(7)
    prompt = encode(tokenizer, PROMPT)
    for _ in range(5):
        output = [rng.randrange(len(tokenizer)) for _ in range(60)]
        deltas, detok, _ = stream(tokenizer, prompt, output)
        assert "".join(deltas) == detok.output_text


@pytest.mark.parametrize("text", MULTIBYTE_TEXTS)
def test_multibyte_characters_never_break(tokenizer: Any, text: str) -> None:
    prompt = encode(tokenizer, PROMPT)
    output = encode(tokenizer, " " + text)
    expected = reference(tokenizer, prompt, output)
    assert "\ufffd" not in expected and expected.strip() == text
    deltas, detok, _ = stream(tokenizer, prompt, output)
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) == detok.output_text == expected
    assert "" in deltas[:-1], "some character should have spanned several tokens"


def test_prompt_context_keeps_leading_space() -> None:
    tok = _fast("byte_fallback")
    prompt = encode(tok, "Hello")
    output = encode(tok, "world")  # Metaspace gives '▁world'; decoded alone it would lose its space
    deltas, detok, _ = stream(tok, prompt, output)
    assert detok.output_text == "".join(deltas) == " world"


@pytest.mark.parametrize("include", [False, True])
def test_stop_strings_never_leak(tokenizer: Any, include: bool) -> None:
    prompt = encode(tokenizer, PROMPT)
    output = encode(tokenizer, " " + STOP_TEXT)
    full = reference(tokenizer, prompt, output)
    for start in range(0, len(full) - 1, 3):
        for length in (1, 2, 4, 7):
            stop = full[start : start + length]
            deltas, detok, matched = stream(tokenizer, prompt, output, stop=[stop], include_stop_str_in_output=include)
            index = full.find(stop)
            expected = full[: index + (len(stop) if include else 0)]
            assert matched == stop
            assert detok.output_text == "".join(deltas) == expected
            if not include:
                assert stop not in "".join(deltas)


def test_stop_split_over_tokens_is_held_back() -> None:
    tok = _fast("byte_level")
    output = tok.convert_tokens_to_ids(list("a_STOx"))  # one token per character
    detok = IncrementalDetokenizer(tok, [], SamplingParams(stop=["STOP"]))
    deltas = []
    for token_id in output:
        assert detok.update([token_id]) is None
        deltas.append(detok.take_delta(finished=False))
    assert deltas == ["a", "_", "", "", "", "STOx"]


def test_overlapping_stop_prefix() -> None:
    tok = _fast("byte_level")
    output = tok.convert_tokens_to_ids(list("xaaab"))
    deltas, detok, matched = stream(tok, [], output, stop=["aab"])
    assert matched == "aab"
    assert detok.output_text == "".join(deltas) == "xa"
    assert deltas == ["x", "", "", "a", ""]  # "xaaa": only the last "aa" can still start "aab"


def test_earliest_of_several_stops_wins() -> None:
    tok = _fast("byte_level")
    output = encode(tok, STOP_TEXT)
    deltas, detok, matched = stream(tok, [], output, stop=["STOP", "42", "world"])
    assert matched == "world"
    assert detok.output_text == "".join(deltas) == "Hello "
    # Everything arriving at once: the earliest start wins even though "42" is listed first.
    detok = IncrementalDetokenizer(tok, [], SamplingParams(stop=["42", "answer"]))
    assert detok.update(output) == "answer"
    assert detok.output_text == "Hello world! The "


def test_held_prefix_released_when_finished_without_stop() -> None:
    tok = _fast("byte_level")
    output = encode(tok, "it ends with ST")
    deltas, detok, matched = stream(tok, [], output, stop=["STOP"])
    assert matched is None
    assert not deltas[-2].endswith("ST") and deltas[-1].endswith("ST")
    assert "".join(deltas) == detok.output_text == "it ends with ST"


def test_after_stop_updates_are_ignored() -> None:
    tok = _fast("byte_level")
    detok = IncrementalDetokenizer(tok, [], SamplingParams(stop=["fox"]))
    assert detok.update(encode(tok, "the quick brown fox jumps")) == "fox"
    assert detok.update(encode(tok, " more")) is None
    assert detok.take_delta(finished=True) == "the quick brown "
    assert detok.take_delta(finished=True) == ""
    assert detok.output_text == "the quick brown "


def test_stop_before_min_tokens_is_ignored() -> None:
    tok = _fast("byte_level")
    output = tok.convert_tokens_to_ids(list("ab_ab"))
    deltas, detok, matched = stream(tok, [], output, stop=["ab"], min_tokens=3)
    assert matched == "ab"
    assert detok.output_text == "".join(deltas) == "ab_"


@pytest.mark.parametrize("skip", [True, False])
def test_skip_special_tokens(tokenizer: Any, skip: bool) -> None:
    hf = _hf(tokenizer)
    special = hf.eos_token_id
    output = encode(tokenizer, "Hi") + [special] + encode(tokenizer, " there")
    prompt = encode(tokenizer, PROMPT)
    deltas, detok, _ = stream(tokenizer, prompt, output, skip_special_tokens=skip)
    assert "".join(deltas) == detok.output_text == reference(tokenizer, prompt, output, skip)
    assert (hf.eos_token in detok.output_text) is not skip


def test_out_of_range_ids_are_ignored(tokenizer: Any) -> None:
    output = encode(tokenizer, "ok") + [len(tokenizer) + 5] + encode(tokenizer, " fine")
    deltas, detok, _ = stream(tokenizer, [], output)
    assert "".join(deltas) == detok.output_text
    assert detok.output_text.endswith("ok fine")


def test_smollm2_chat_reply_streams_cleanly(smollm2_tokenizer: Any) -> None:
    tok = smollm2_tokenizer
    messages = [{"role": "user", "content": "Say hi"}]
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompt_ids = tok.encode(prompt, add_special_tokens=False)
    reply = "こんにちは! 👋 The capital of France is Paris."
    output = tok.encode(reply, add_special_tokens=False) + [tok.convert_tokens_to_ids("<|im_end|>")]
    deltas, detok, matched = stream(tok, prompt_ids, output, stop=["Paris"], include_stop_str_in_output=True)
    assert matched == "Paris"
    assert all("\ufffd" not in d for d in deltas)
    assert detok.output_text == "".join(deltas) == "こんにちは! 👋 The capital of France is Paris"


def test_a_character_cut_off_by_the_last_token_is_dropped_not_replaced() -> None:
    # Byte-level vocabulary: every byte is one token, so a 4-byte emoji spans four tokens.
    byte_tokens = [pre_tokenizers.ByteLevel.alphabet()]
    vocab = {ch: i for i, ch in enumerate(sorted(byte_tokens[0]))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok)
    ids = tokenizer("ok 😀")["input_ids"]
    assert len(ids) == 7
    detok = IncrementalDetokenizer(tokenizer, [], SamplingParams())
    detok.update(ids[:-1])  # the emoji's last byte never comes: max_tokens cut it off
    text = detok.take_delta(finished=False) + detok.take_delta(finished=True)
    assert text == "ok "


LONG_STOP_PIECES = ["The answer is forty two, said the computer. ", "日本語のテキスト ", "Party 🎉 time! "]


def _long_stop(length: int, seed: int) -> str:
    rng = random.Random(seed)
    text = ""
    while len(text) < length:
        text += rng.choice(LONG_STOP_PIECES)
    return text[:length]


@pytest.mark.parametrize("include", [False, True])
def test_a_stop_string_of_the_longest_allowed_length_is_found_across_many_tokens(include: bool) -> None:
    tok = _fast("byte_level")  # an ASCII-trained vocabulary: the Japanese and emoji arrive byte by byte
    stop = _long_stop(1024, 1)
    before = "Hello world, here it comes: "
    output = encode(tok, before + stop + " and what follows must never show")
    deltas, detok, matched = stream(tok, [], output, stop=["unrelated", stop], include_stop_str_in_output=include)
    assert matched == stop
    assert "".join(deltas) == detok.output_text == before + (stop if include else "")
    assert all("\ufffd" not in d for d in deltas)
    # Text that cannot start the stop string streams at once; the stop's own prefix is held back, not the rest.
    assert "".join(deltas[:-1]).startswith("Hello world")


def test_a_long_stop_prefix_that_is_never_completed_is_released_in_full() -> None:
    tok = _fast("byte_level")
    stop = _long_stop(1024, 2)
    text = "Start " + stop[:-1] + "X, then more text."  # one character short of stopping
    deltas, detok, matched = stream(tok, [], encode(tok, text), stop=[stop])
    assert matched is None and "".join(deltas) == detok.output_text == text


def _traced(fn):  # noqa: ANN001, ANN202 - (result, bytes retained, peak bytes) of fn()
    tracemalloc.start()
    try:
        result = fn()
        retained, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, retained, peak


def test_long_stop_strings_cost_memory_linear_in_their_length() -> None:
    tok = _fast("byte_level")
    prompt = encode(tok, PROMPT)
    stops = [_long_stop(1024, seed) for seed in range(32)]  # the most SamplingParams allows
    params = SamplingParams(stop=stops)
    detok, retained, peak = _traced(lambda: IncrementalDetokenizer(tok, prompt, params))
    # All prefixes of these stop strings (what the detokenizer used to precompute) would be ~20 MB.
    assert retained < 2 * 1024 * 1024 and peak < 3 * 1024 * 1024, (retained, peak)

    output = encode(tok, (" ".join(_long_stop(1024, 100 + i) for i in range(8)))[:6000])

    def run() -> str:
        for token_id in output:
            assert detok.update([token_id]) is None
            detok.take_delta(finished=False)
        return detok.take_delta(finished=True)

    _, retained_after, peak_streaming = _traced(run)
    text_bytes = len(detok.output_text.encode("utf-32"))  # generous: the text itself is kept
    assert peak_streaming < text_bytes + 512 * 1024, (peak_streaming, text_bytes)
