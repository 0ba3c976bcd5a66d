"""The original repository's ChatPrompt tests, ported: history accessors, rendering, omit-last-message, regenerate's
`clear_last_responder_message`, removing turns and `is_empty`, on the RedPajama and rinna presets.

Source: the original repository's tests/test_chat_prompt_of_redpajama.py and tests/test_chat_prompt_of_rinna.py
(written again here, in this project's words). Where the repository's early presets differ from the 0.3.0 release
this package follows, the 0.3.0 behaviour is checked and the difference is noted: RedPajama's stop strings
(the repository: `["<|endoftext|>", "\\n<"]`; 0.3.0: `["<|endoftext|>"]` plus the requester prefix `"<human>:"`).
"""

from __future__ import annotations

import pytest

from chatstream import ChatPromptRinnaJapaneseGPTNeoxInst, ChatPromptTogetherRedPajamaINCITEChat

TOKYO = "日本のおすすめの観光地を教えてください。"
WHICH = "どの地域の観光地が知りたいですか？"
SHIBUYA = "渋谷の観光地を教えてください。"
ANSWER = "渋谷の観光地は以下が有名です<NL>ハチ公前<NL>109<NL>道玄坂"
TWO_TURNS = f"ユーザー: {TOKYO}<NL>システム: {WHICH}<NL>ユーザー: {SHIBUYA}<NL>システム: "


# -- RedPajama ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def redpajama() -> ChatPromptTogetherRedPajamaINCITEChat:
    prompt = ChatPromptTogetherRedPajamaINCITEChat()
    prompt.set_requester("<human>")
    prompt.set_responder("<bot>")
    prompt.add_requester_msg("Who is Alan Turing")
    prompt.add_responder_msg("He is a nice guy")
    return prompt


def test_redpajama_settings_and_history(redpajama) -> None:
    assert redpajama.get_turn() == 1
    assert redpajama.is_chat_mode_enabled() is True
    assert redpajama.system == ""
    assert (redpajama.requester, redpajama.responder) == ("<human>", "<bot>")
    assert redpajama.get_requester_last_msg() == "Who is Alan Turing"
    assert redpajama.get_responder_last_msg() == "He is a nice guy"


def test_redpajama_stop_strings_are_the_releases(redpajama) -> None:
    assert redpajama.get_stop_strs() == ["<|endoftext|>"]
    assert redpajama.get_final_stop_strs() == ["<human>:", "<|endoftext|>"]


def test_redpajama_prompt_and_omit_last_message(redpajama) -> None:
    assert redpajama.create_prompt() == "<human>: Who is Alan Turing\n<bot>: He is a nice guy\n"
    assert redpajama.create_prompt({"omit_last_message": True}) == "<human>: Who is Alan Turing\n<bot>:"


# -- rinna -------------------------------------------------------------------------------------------------------------


def rinna(*messages: str | None) -> ChatPromptRinnaJapaneseGPTNeoxInst:
    prompt = ChatPromptRinnaJapaneseGPTNeoxInst()
    for index, message in enumerate(messages):
        (prompt.add_requester_msg if index % 2 == 0 else prompt.add_responder_msg)(message)
    return prompt


def test_rinna_settings_and_open_turn() -> None:
    prompt = rinna(TOKYO, WHICH, SHIBUYA, None)
    assert prompt.get_turn() == 2 and prompt.is_chat_mode_enabled() is True and prompt.system == ""
    assert (prompt.requester, prompt.responder) == ("ユーザー", "システム")
    assert prompt.get_stop_strs() == []
    assert prompt.create_prompt() == TWO_TURNS
    assert prompt.get_requester_last_msg() == SHIBUYA and prompt.get_responder_last_msg() is None


def test_rinna_last_messages_and_full_prompt() -> None:
    prompt = rinna(TOKYO, WHICH, SHIBUYA, ANSWER)
    assert prompt.get_requester_last_msg() == SHIBUYA and prompt.get_responder_last_msg() == ANSWER
    assert prompt.create_prompt() == TWO_TURNS + ANSWER + "<NL>"
    assert prompt.create_prompt({"omit_last_message": True}) == TWO_TURNS


def test_rinna_clear_last_responder_message_for_regenerate() -> None:
    prompt = rinna(TOKYO, WHICH, SHIBUYA, ANSWER)
    prompt.clear_last_responder_message()
    assert prompt.get_responder_last_msg() is None
    assert prompt.responder_messages[-1].get_message() is None  # the lists hold ChatContent objects
    prompt.clear_last_responder_message()  # already open: nothing changes
    assert prompt.get_requester_last_msg() == SHIBUYA and prompt.create_prompt() == TWO_TURNS


def test_rinna_clear_last_responder_message_with_an_open_or_no_turn() -> None:
    prompt = rinna(TOKYO, WHICH, SHIBUYA, None)
    prompt.clear_last_responder_message()
    assert prompt.get_responder_last_msg() is None and prompt.create_prompt() == TWO_TURNS
    empty = ChatPromptRinnaJapaneseGPTNeoxInst()
    assert not empty.responder_messages
    empty.clear_last_responder_message()  # no IndexError
    assert empty.get_responder_last_msg() is None and empty.create_prompt() == empty.system


def test_rinna_remove_last_messages() -> None:
    prompt = ChatPromptRinnaJapaneseGPTNeoxInst()
    prompt.add_requester_msg("メッセージ1")
    prompt.add_requester_msg("メッセージ2")
    prompt.remove_last_requester_msg()
    assert len(prompt.requester_messages) == 1 and prompt.requester_messages[-1].get_message() == "メッセージ1"

    prompt = ChatPromptRinnaJapaneseGPTNeoxInst()
    prompt.add_responder_msg("メッセージ1")
    prompt.add_responder_msg("メッセージ2")
    prompt.remove_last_responder_msg()
    assert len(prompt.responder_messages) == 1 and prompt.responder_messages[-1].get_message() == "メッセージ1"


def test_rinna_is_empty() -> None:
    prompt = ChatPromptRinnaJapaneseGPTNeoxInst()
    assert prompt.is_empty() is True
    prompt.add_requester_msg("こんにちは")
    assert prompt.is_empty() is False
    prompt.remove_last_requester_msg()
    assert prompt.is_empty() is True
    prompt.add_responder_msg("こんにちは")
    assert prompt.is_empty() is False


def test_rinna_input_newlines_become_nl() -> None:
    prompt = rinna("一行目\n二行目", None)
    assert prompt.get_requester_last_msg() == "一行目<NL>二行目"
