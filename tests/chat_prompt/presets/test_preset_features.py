"""Preset-specific behaviour: SINGLE_TURN presets, child messages, prefix-as-stop, rinna's <NL> replacements,
Llama-2's system block and echo correction."""

from __future__ import annotations

from chatstream.chat_prompt import (
    ChatPromptDatabricksDolly,
    ChatPromptMatsuoLabJpGptNeoxInstSft,
    ChatPromptMetaLlamaLlama2Chat,
    ChatPromptMetaLlamaLlama3Instruct,
    ChatPromptMosaicmlMptChat,
    ChatPromptRinnaJpGptNeoxInstSft,
    ChatPromptRinnaNekomata,
    ChatPromptStabilityAiJpGptNeoxInstSft,
    ChatPromptTogetherRedPajamaINCITEChat,
    PromptTTL,
)

ALPACA_JA = "以下は、タスクを説明する指示と、文脈のある入力の組み合わせです。要求を適切に満たす応答を書きなさい。"


def test_prefix_as_stop_string() -> None:
    redpajama = ChatPromptTogetherRedPajamaINCITEChat()
    assert redpajama.is_prefix_as_stop_str_enabled()
    assert redpajama.responder_prefix_as_stop_str == "<human>:"
    assert redpajama.get_final_stop_strs() == ["<human>:", "<|endoftext|>"]
    assert ChatPromptMosaicmlMptChat().get_final_stop_strs() == ["<human>:"]
    assert ChatPromptDatabricksDolly().responder_prefix_as_stop_str == "### Instruction:\n"


def test_stabilityai_child_messages() -> None:
    prompt = ChatPromptStabilityAiJpGptNeoxInstSft()
    prompt.add_requester_msg("要約してください", child_message="本文")
    prompt.add_responder_msg(None)
    assert prompt.create_prompt() == (
        f"{ALPACA_JA}\n\n### 指示: \n要約してください\n\n### 入力: \n本文\n\n### 応答: "
    )


def test_matsuo_single_turn_with_child_messages() -> None:
    prompt = ChatPromptMatsuoLabJpGptNeoxInstSft()
    assert prompt.get_prompt_ttl() == PromptTTL.SINGLE_TURN
    prompt.add_requester_msg("前の質問")
    prompt.add_responder_msg("前の答え")
    prompt.add_requester_msg("翻訳して", child_messages=["文1", "文2"])
    prompt.add_responder_msg(None)
    assert prompt.create_prompt() == (
        f"{ALPACA_JA}\n\n### 指示: \n翻訳して\n\n### 入力: \n文1\n\n### 入力: \n文2\n\n### 応答: "
    )


def test_dolly_child_message_is_the_input_section() -> None:
    prompt = ChatPromptDatabricksDolly()
    prompt.add_requester_msg("Summarize.", child_message="Some text.")
    prompt.add_responder_msg(None)
    assert prompt.create_prompt().endswith("### Instruction:\nSummarize.\n\nInput:\nSome text.\n\n### Response:\n")


def test_llama3_child_messages_join_the_user_text() -> None:
    prompt = ChatPromptMetaLlamaLlama3Instruct()
    prompt.set_system("")
    prompt.add_requester_msg("Q", child_message="context")
    prompt.add_responder_msg(None)
    assert prompt.create_prompt() == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nQ\n\ncontext<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_nekomata_is_single_turn_translation() -> None:
    prompt = ChatPromptRinnaNekomata()
    assert prompt.get_prompt_ttl() == PromptTTL.SINGLE_TURN
    for text in ("一つ目", "二つ目"):
        prompt.add_requester_msg(text)
        prompt.add_responder_msg(None)
        prompt.set_responder_last_msg("done")
    prompt.clear_last_responder_message()
    assert prompt.create_prompt() == (
        f"{ALPACA_JA}\n\n### 指示:\n次の日本語を英語に翻訳してください。\n\n### 入力:\n二つ目\n\n### 応答:\n"
    )


def test_rinna_newline_replacements() -> None:
    prompt = ChatPromptRinnaJpGptNeoxInstSft()
    prompt.add_requester_msg("一行目\n二行目")
    assert prompt.get_requester_last_msg() == "一行目<NL>二行目"  # replaced on insertion
    assert prompt.get_replacement_when_output() == [("<NL>", "\n")]
    # A streamed reply arrives with real newlines (output replacement); the prompt re-encodes them.
    prompt.add_responder_msg("答え\n続き")
    prompt.add_requester_msg("次")
    prompt.add_responder_msg(None)
    assert prompt.create_prompt() == "ユーザー: 一行目<NL>二行目<NL>システム: 答え<NL>続き<NL>ユーザー: 次<NL>システム: "


def test_llama2_system_block_variants_and_echo_correction() -> None:
    prompt = ChatPromptMetaLlamaLlama2Chat()
    prompt.set_system("")
    prompt.add_requester_msg("Q1")
    prompt.add_responder_msg(None)
    assert prompt.create_prompt() == "<s>[INST] Q1 [/INST] "
    assert prompt.get_custom_skip_echo_len(10) == 10  # first turn: no correction
    prompt.set_responder_last_msg("A1")
    prompt.add_requester_msg("Q2")
    prompt.add_responder_msg(None)
    assert prompt.get_custom_skip_echo_len(10) == 12
    # A system text stored already wrapped (as the reference's preset did) is not wrapped twice.
    prompt.set_system("<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n")
    assert prompt.create_prompt() == "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nQ1 [/INST] A1 </s><s>[INST] Q2 [/INST] "


def test_llama2_single_turn() -> None:
    prompt = ChatPromptMetaLlamaLlama2Chat()
    prompt.set_system("S")
    prompt.set_prompt_ttl(PromptTTL.SINGLE_TURN)
    prompt.add_requester_msg("Q1")
    prompt.add_responder_msg("A1")
    prompt.add_requester_msg("Q2")
    prompt.add_responder_msg(None)
    assert prompt.create_prompt() == "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nQ2 [/INST] "
