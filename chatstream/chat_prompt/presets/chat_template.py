"""The generic preset: render the tokenizer's own chat template.

Any model whose tokenizer ships a chat template (most instruct models since 2024) works without a hand-written
preset: the history becomes a list of `{"role", "content"}` messages and `tokenizer.apply_chat_template` renders it.
The tokenizer is duck-typed; this module imports nothing from transformers, so importing the prompt package stays
cheap.
"""

from __future__ import annotations

from typing import Any

from chatstream.chat_prompt.abstract_chat_prompt import AbstractChatPrompt
from chatstream.chat_prompt.presets._common import merged_message, passthrough_prompt
from chatstream.chat_prompt.role_type import RoleType

# End-of-turn special tokens of the common template families: ChatML, Llama-3, Phi-3, Gemma, GPT-2-style.
END_OF_TURN_TOKENS: tuple[str, ...] = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>")


class ChatPromptChatTemplate(AbstractChatPrompt):
    """Renders the history with the tokenizer's chat template; needs `set_tokenizer` before `create_prompt`.

    The system message is sent only when `set_system` was given non-empty text (otherwise the template's own
    default, if any, applies). Child messages are appended to their user message, separated by a blank line.
    """

    chat_stop_strs = ()

    def __init__(self) -> None:
        super().__init__()
        self.set_requester("user")
        self.set_responder("assistant")
        self._stop_tokens_cache: tuple[Any, list[str]] | None = None

    def set_tokenizer(self, tokenizer: Any) -> None:
        super().set_tokenizer(tokenizer)
        self._stop_tokens_cache = None

    def get_stop_tokens(self) -> list[str]:
        """The entries of `END_OF_TURN_TOKENS` that the tokenizer's vocabulary holds ([] without a tokenizer)."""
        tokenizer = self.tokenizer
        if tokenizer is None:
            return []
        # get_vocab() builds a dict of the whole vocabulary; do it once per tokenizer, not once per request.
        if self._stop_tokens_cache is None or self._stop_tokens_cache[0] is not tokenizer:
            vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
            self._stop_tokens_cache = (tokenizer, [t for t in END_OF_TURN_TOKENS if t in vocab])
        return list(self._stop_tokens_cache[1])

    def get_add_special_tokens(self) -> bool | None:
        # Templates render BOS themselves where the model wants one; the tokenizer must not add another.
        return False if self.chat_mode else None

    def build_messages(self, opts: dict[str, Any] | None = None) -> tuple[list[dict[str, str]], bool]:
        """(messages for apply_chat_template, whether to add the generation prompt).

        The generation prompt is added when the last turn is an open responder turn; other open turns are dropped.
        """
        messages: list[dict[str, str]] = []
        if self.system:
            messages.append({"role": "system", "content": self.system})
        contents = self.get_contents(opts)
        add_generation_prompt = bool(contents) and (
            contents[-1].get_role_type() == RoleType.RESPONDER and contents[-1].get_message() is None
        )
        for content in contents:
            message = merged_message(content)
            if message is None:
                continue
            if content.get_role_type() == RoleType.REQUESTER:
                role = "user"
            elif content.get_role_type() == RoleType.RESPONDER:
                role = "assistant"
            else:
                role = content.get_role()
            messages.append({"role": role, "content": message})
        return messages, add_generation_prompt

    def create_prompt(self, opts: dict[str, Any] | None = None) -> str:
        if not self.chat_mode:
            return passthrough_prompt(self)
        tokenizer = self.tokenizer
        if tokenizer is None:
            raise ValueError("ChatPromptChatTemplate needs the tokenizer: call set_tokenizer(tokenizer) first")
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                f"the tokenizer ({type(tokenizer).__name__}) has no chat template; use a preset written for the model"
            )
        messages, add_generation_prompt = self.build_messages(opts)
        if not messages:
            return ""
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
