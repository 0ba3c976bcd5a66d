"""The generic chat-template preset, against the real SmolLM2 tokenizer (ChatML) and a stub."""

from __future__ import annotations

from typing import Any

import pytest

from chatstream.chat_prompt import ChatPromptChatTemplate, PromptTTL

SMOL_DEFAULT_SYSTEM = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
)


def fixed_history(prompt: ChatPromptChatTemplate) -> ChatPromptChatTemplate:
    prompt.add_requester_msg("Q1 line1\nline2")
    prompt.add_responder_msg("A1")
    prompt.add_requester_msg("Q2")
    prompt.add_responder_msg(None)
    return prompt


@pytest.fixture
def prompt(smollm2_tokenizer: Any) -> ChatPromptChatTemplate:
    prompt = ChatPromptChatTemplate()
    prompt.set_tokenizer(smollm2_tokenizer)
    return fixed_history(prompt)


def test_golden_with_the_templates_default_system(prompt: ChatPromptChatTemplate) -> None:
    assert prompt.create_prompt() == (
        SMOL_DEFAULT_SYSTEM + "<|im_start|>user\nQ1 line1\nline2<|im_end|>\n"
        "<|im_start|>assistant\nA1<|im_end|>\n"
        "<|im_start|>user\nQ2<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert prompt.get_final_stop_strs() == []
    assert prompt.get_add_special_tokens() is False


def test_stop_tokens_are_the_end_of_turn_tokens_in_the_vocab(prompt: ChatPromptChatTemplate) -> None:
    assert prompt.get_stop_tokens() == ["<|im_end|>", "<|endoftext|>"]
    assert prompt.get_stop_tokens() == ["<|im_end|>", "<|endoftext|>"]  # cached path
    assert ChatPromptChatTemplate().get_stop_tokens() == []


def test_system_children_single_turn(prompt: ChatPromptChatTemplate) -> None:
    prompt.set_system("Be brief.")
    prompt.chat_contents[2].add_child_message("context")
    prompt.set_prompt_ttl(PromptTTL.SINGLE_TURN)
    assert prompt.create_prompt() == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nQ2\n\ncontext<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_closed_last_turn_has_no_generation_prompt(prompt: ChatPromptChatTemplate) -> None:
    prompt.set_responder_last_msg("A2")
    assert prompt.create_prompt().endswith("<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\nA2<|im_end|>\n")
    assert prompt.create_prompt({"omit_last_message": True}).endswith("<|im_start|>assistant\n")


def test_chat_mode_off(prompt: ChatPromptChatTemplate) -> None:
    prompt.set_chat_mode_enabled(False)
    assert prompt.create_prompt() == "Q2"
    assert prompt.get_stop_strs() is None and prompt.get_add_special_tokens() is None


def test_clear_errors_without_a_usable_tokenizer() -> None:
    prompt = fixed_history(ChatPromptChatTemplate())
    with pytest.raises(ValueError, match="set_tokenizer"):
        prompt.create_prompt()

    class NoTemplate:
        chat_template = None
        special_tokens_map: dict[str, str] = {}

    prompt.set_tokenizer(NoTemplate())
    with pytest.raises(ValueError, match="no chat template"):
        prompt.create_prompt()


def test_messages_passed_to_a_stub_tokenizer() -> None:
    calls: list[tuple[list[dict[str, str]], bool]] = []

    class Stub:
        chat_template = "{{ stub }}"
        special_tokens_map = {"eos_token": "<end_of_turn>"}

        def get_vocab(self) -> dict[str, int]:
            return {"<end_of_turn>": 1, "<|eot_id|>": 2, "hello": 3}

        def apply_chat_template(self, messages: Any, tokenize: bool, add_generation_prompt: bool) -> str:
            assert tokenize is False
            calls.append((messages, add_generation_prompt))
            return "rendered"

    prompt = ChatPromptChatTemplate()
    prompt.set_tokenizer(Stub())
    assert prompt.create_prompt() == ""  # nothing to render yet
    fixed_history(prompt)
    assert prompt.create_prompt() == "rendered"
    assert calls == [
        (
            [
                {"role": "user", "content": "Q1 line1\nline2"},
                {"role": "assistant", "content": "A1"},
                {"role": "user", "content": "Q2"},
            ],
            True,
        )
    ]
    assert prompt.get_stop_tokens() == ["<|eot_id|>", "<end_of_turn>"]
