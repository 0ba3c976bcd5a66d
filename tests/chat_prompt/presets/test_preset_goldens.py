"""Golden texts: the exact prompt every hand-written preset renders for the reference history, its final stop
strings, stop tokens and tokenization hint, and the chat-mode-off passthrough."""

from __future__ import annotations

import pytest

from chatstream.chat_prompt import PRESETS, AbstractChatPrompt

LLAMA2_SYS = (
    "You are a helpful, respectful and honest assistant. Always answer as helpfully as possible, while being safe. "
    "Your answers should not include any harmful, unethical, racist, sexist, toxic, dangerous, or illegal content. "
    "Please ensure that your responses are socially unbiased and positive in nature.\n"
    "If a question does not make any sense, or is not factually coherent, explain why instead of answering "
    "something not correct. If you don't know the answer to a question, please don't share false information."
)
ALPACA_JA = "以下は、タスクを説明する指示と、文脈のある入力の組み合わせです。要求を適切に満たす応答を書きなさい。"
DOLLY = "Below is an instruction that describes a task. Write a response that appropriately completes the request."
RAKUTEN = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)

# name -> (prompt text, final stop strings, stop tokens, add_special_tokens)
GOLDENS: dict[str, tuple[str, list[str], list[str], bool | None]] = {
    "redpajama": (
        "<human>: Q1 line1\nline2\n<bot>: A1\n<human>: Q2\n<bot>:",
        ["<human>:", "<|endoftext|>"], [], None,
    ),
    "mpt": ("<human>: Q1 line1\nline2\n<bot>: A1\n<human>: Q2\n<bot>:", ["<human>:"], [], None),
    "rinna": ("ユーザー: Q1 line1<NL>line2<NL>システム: A1<NL>ユーザー: Q2<NL>システム: ", [], [], None),
    "llama2": (
        f"<s>[INST] <<SYS>>\n{LLAMA2_SYS}\n<</SYS>>\n\nQ1 line1\nline2 [/INST] A1 </s><s>[INST] Q2 [/INST] ",
        [], [], False,
    ),
    "open_llama": ("Q: Q1 line1\nline2\nA: A1\nQ: Q2\nA:", ["\nQ:", "\nB:", "\nC:"], [], None),
    "stabilityai_jp": (
        f"{ALPACA_JA}\n\n### 指示: \nQ1 line1\nline2\n\n### 応答: \nA1\n\n### 指示: \nQ2\n\n### 応答: ",
        ["### 指示: "], [], None,
    ),
    "matsuo": (f"{ALPACA_JA}\n\n### 指示: \nQ2\n\n### 応答: ", ["### 指示: ", "Q:"], [], None),
    # Fixed: the reference glued "ユーザー:" onto the previous answer.
    "line": ("ユーザー: Q1 line1\nline2\nシステム: A1\nユーザー: Q2\nシステム: ", ["ユーザー: "], [], None),
    # Fixed: the reference repeated "Q2" for the open turn.
    "stockmark": ("Q1 line1\nline2A1Q2", [], [], None),
    "open_calm": ("Q1 line1\nline2A1Q2", [], [], None),
    "dolly": (
        f"{DOLLY}\n\n### Instruction:\nQ1 line1\nline2\n\n### Response:\nA1\n\n### Instruction:\nQ2\n\n### Response:\n",
        ["### Instruction:\n"], [], None,
    ),
    "llama3": (
        "<|begin_of_text|>"
        f"<|start_header_id|>system<|end_header_id|>\n\n{LLAMA2_SYS}<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nQ1 line1\nline2<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nA1<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nQ2<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
        [], ["<|eot_id|>"], False,
    ),
    "rakuten": (f"{RAKUTEN} USER: Q1 line1\nline2 ASSISTANT: A1</s>USER: Q2 ASSISTANT:", ["USER:"], [], None),
    "karasu": (
        "<|im_start|>system\nあなたはAIアシスタントです。<|im_end|>\n"
        "<|im_start|>user\nQ1 line1\nline2<|im_end|>\n"
        "<|im_start|>assistant\nA1<|im_end|>\n"
        "<|im_start|>user\nQ2<|im_end|>\n"
        "<|im_start|>assistant\n",
        ["<|im_end|>"], ["<|im_end|>"], None,
    ),
    "nekomata": (
        f"{ALPACA_JA}\n\n### 指示:\n次の日本語を英語に翻訳してください。\n\n### 入力:\nQ2\n\n### 応答:\n",
        ["<|endoftext|>"], [], None,
    ),
}  # fmt: skip


def fixed_history(prompt: AbstractChatPrompt) -> AbstractChatPrompt:
    prompt.add_requester_msg("Q1 line1\nline2")
    prompt.add_responder_msg("A1")
    prompt.add_requester_msg("Q2")
    prompt.add_responder_msg(None)
    return prompt


def test_every_hand_written_preset_has_a_golden() -> None:
    assert set(GOLDENS) == set(PRESETS) - {"chat_template"}


@pytest.mark.parametrize("name", sorted(GOLDENS))
def test_golden_prompt(name: str) -> None:
    text, stop_strs, stop_tokens, add_special_tokens = GOLDENS[name]
    prompt = fixed_history(PRESETS[name]())
    assert prompt.create_prompt() == text
    assert prompt.get_final_stop_strs() == stop_strs
    assert prompt.get_stop_tokens() == stop_tokens
    assert prompt.get_add_special_tokens() is add_special_tokens


@pytest.mark.parametrize("name", sorted(GOLDENS))
def test_omit_last_message_gives_the_prompt_before_the_reply(name: str) -> None:
    prompt = fixed_history(PRESETS[name]())
    prompt.set_responder_last_msg("partial reply")
    assert prompt.create_prompt({"omit_last_message": True}) == GOLDENS[name][0]


@pytest.mark.parametrize("name", sorted(GOLDENS))
def test_chat_mode_off_passes_the_last_user_message_through(name: str) -> None:
    prompt = fixed_history(PRESETS[name]())
    prompt.set_chat_mode_enabled(False)
    expected = "Q2"
    assert prompt.create_prompt() == expected
    assert prompt.get_stop_strs() in (None, [])
    assert prompt.get_final_stop_strs() == []
    assert prompt.get_add_special_tokens() is None


@pytest.mark.parametrize("name", sorted(GOLDENS))
def test_presets_construct_with_an_empty_history(name: str) -> None:
    prompt = PRESETS[name]()
    assert prompt.is_empty()
    assert isinstance(prompt.create_prompt(), str)


@pytest.mark.parametrize("name", sorted(GOLDENS))
def test_to_dict_from_dict_round_trip(name: str) -> None:
    cls = PRESETS[name]
    prompt = fixed_history(cls())
    restored = cls.from_dict(prompt.to_dict())
    assert restored.create_prompt() == GOLDENS[name][0]
    assert restored.get_final_stop_strs() == GOLDENS[name][1]
    assert restored.to_dict() == prompt.to_dict()
