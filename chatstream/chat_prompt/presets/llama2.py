"""Preset for meta-llama/Llama-2-7b-chat(-hf) and the other Llama-2 chat sizes.

Shape: `<s>[INST] <<SYS>>⏎{system}⏎<</SYS>>⏎⏎Q1 [/INST] A1 </s><s>[INST] Q2 [/INST] `. Roles are empty: a user turn
is its text plus " [/INST] ", a reply its text plus " </s><s>[INST] ", and the open turn renders nothing. The prompt
carries its own `<s>`, so it is tokenized without special tokens (else the tokenizer adds a second BOS).
"""

from __future__ import annotations

from typing import Any

from chatstream.chat_prompt.abstract_chat_prompt import AbstractChatPrompt
from chatstream.chat_prompt.presets._common import merged_message, passthrough_prompt
from chatstream.chat_prompt.role_type import RoleType

LLAMA2_DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful, respectful and honest assistant. Always answer as helpfully as possible, while being safe. "
    "Your answers should not include any harmful, unethical, racist, sexist, toxic, dangerous, or illegal content. "
    "Please ensure that your responses are socially unbiased and positive in nature.\n"
    "If a question does not make any sense, or is not factually coherent, explain why instead of answering "
    "something not correct. If you don't know the answer to a question, please don't share false information."
)

_OPEN = "<s>[INST] "


class ChatPromptMetaLlamaLlama2Chat(AbstractChatPrompt):
    """Llama-2-chat `[INST]` format with a `<<SYS>>` block."""

    chat_stop_strs = ()

    def __init__(self) -> None:
        super().__init__()
        self.set_system(LLAMA2_DEFAULT_SYSTEM_PROMPT)
        self.set_requester("")
        self.set_responder("")

    def get_add_special_tokens(self) -> bool | None:
        return False if self.chat_mode else None

    def get_custom_skip_echo_len(self, skip_echo_len: int) -> int:
        # The reference's correction for Llama-2's decode dropping a character per turn from the second turn on.
        num_turns = self.get_turn()
        return skip_echo_len + num_turns if num_turns >= 2 else skip_echo_len

    def _system_block(self) -> str:
        if not self.system:
            return _OPEN
        if self.system.startswith(_OPEN):
            return self.system  # already wrapped, as the reference's preset stored it
        return f"{_OPEN}<<SYS>>\n{self.system}\n<</SYS>>\n\n"

    def create_prompt(self, opts: dict[str, Any] | None = None) -> str:
        if not self.chat_mode:
            return passthrough_prompt(self)
        parts = [self._system_block()]
        for content in self.get_contents(opts):
            message = merged_message(content)
            if message is None:
                continue
            if content.get_role_type() == RoleType.RESPONDER:
                parts.append(f"{message} </s>{_OPEN}")
            else:
                parts.append(f"{message} [/INST] ")
        return "".join(parts)
