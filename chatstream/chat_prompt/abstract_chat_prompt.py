"""The base class every chat prompt derives from.

This module owns `AbstractChatPrompt`: a model's prompt "etiquette". It holds the history (see `ChatHistory`),
the system text and role labels, and answers the questions the generator asks before and during generation:
the prompt text (`create_prompt`), the stop strings (`get_final_stop_strs`), the stop *tokens*
(`get_stop_tokens`), how to tokenize the prompt (`get_add_special_tokens`) and the text replacements on input and
output.

To support a new model, subclass it, set the roles in `__init__` and implement `create_prompt`; everything else
has a working default. See the presets under `chatstream.chat_prompt.presets` for examples.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, TypeVar

from chatstream.chat_prompt.chat_history import ChatHistory, ReplacementPairs
from chatstream.chat_prompt.prompt_ttl import PromptTTL

PromptT = TypeVar("PromptT", bound="AbstractChatPrompt")


def _special_token_strings(tokenizer: Any) -> list[str]:
    """Every special-token string of a HF-style tokenizer (values of special_tokens_map may be lists)."""
    tokens: list[str] = []
    values = list((getattr(tokenizer, "special_tokens_map", None) or {}).values())
    values += list(getattr(tokenizer, "all_special_tokens", None) or [])
    for value in values:
        for token in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(token, str) and token and token not in tokens:
                tokens.append(token)
    return tokens


class AbstractChatPrompt(ChatHistory, ABC):
    """A model-specific prompt builder over a chat history.

    Hooks a subclass may override (all but `create_prompt` have defaults):
    `create_prompt`, `build_initial_prompt`, `get_stop_strs`, `get_stop_tokens`, `get_add_special_tokens`,
    `get_replacement_when_input`, `get_replacement_when_output`, `get_custom_skip_echo_len`.
    """

    def __init__(self) -> None:
        self._init_history()
        self.system: str = ""
        self.requester: str = ""
        self.responder: str = ""
        self.chat_mode: bool = True
        self.special_tokens: list[str] | None = None
        self.tokenizer: Any = None
        self.prefix_as_stop_str_enabled: bool = False
        # Named "responder" in the reference, but it holds the text that opens a *requester* turn.
        self.responder_prefix_as_stop_str: str | None = None
        self.final_stop_strs: list[str] | None = None
        self.prompt_ttl_mode: PromptTTL = PromptTTL.MULTI_TURN

    # -- configuration ------------------------------------------------------------------------------------------------

    def set_system(self, system: str) -> None:
        """The system / preamble text; most presets put it first, verbatim."""
        self.system = system

    def get_system(self) -> str:
        return self.system

    def set_requester(self, requester: str) -> None:
        """The user's role label as the model expects it (e.g. "<human>"), or "" for role-less formats."""
        self.requester = requester

    def get_requester(self) -> str:
        return self.requester

    def set_responder(self, responder: str) -> None:
        """The model's role label (e.g. "<bot>"), or ""."""
        self.responder = responder

    def get_responder(self) -> str:
        return self.responder

    def set_chat_mode_enabled(self, enabled: bool) -> None:
        """Chat mode off = plain completion: the prompt is the raw last user message and no stop strings apply."""
        self.chat_mode = enabled

    def is_chat_mode_enabled(self) -> bool:
        return self.chat_mode

    def set_prompt_ttl(self, prompt_ttl_mode: PromptTTL) -> None:
        self.prompt_ttl_mode = prompt_ttl_mode

    def get_prompt_ttl(self) -> PromptTTL:
        return self.prompt_ttl_mode

    def set_tokenizer(self, tokenizer: Any) -> None:
        """Keep the tokenizer (presets that render its chat template need it) and its special-token strings (removed
        from the prompt when its length is measured, see `get_skip_len`)."""
        self.tokenizer = tokenizer
        self.special_tokens = _special_token_strings(tokenizer)

    def get_tokenizer(self) -> Any:
        return self.tokenizer

    def set_prefix_as_stop_str_enabled(self, enabled: bool) -> None:
        """Also stop when the model starts a new *user* turn (for models that do not emit EOS reliably).

        The text that opens a user turn is found by rendering the empty history and the history with one open user
        turn and taking the difference (RedPajama: "<human>:"). Call it after the roles are set (normally in
        `__init__`): it clears the history before and after. ValueError if the difference is empty.
        """
        self.prefix_as_stop_str_enabled = enabled
        self.responder_prefix_as_stop_str = None
        if not enabled:
            return
        chat_mode = self.chat_mode
        self.chat_mode = True  # the passthrough of chat-mode-off would hide the role prefix
        try:
            self.clear_history()
            without_turn = self.create_prompt()
            self.add_requester_msg(None)
            with_turn = self.create_prompt()
        finally:
            self.clear_history()
            self.chat_mode = chat_mode
        if not with_turn.startswith(without_turn) or not with_turn[len(without_turn) :]:
            raise ValueError(
                "could not derive the requester prefix: rendering an open requester turn must append text to the "
                f"empty prompt (got {without_turn!r} then {with_turn!r}); set the roles before enabling this"
            )
        self.responder_prefix_as_stop_str = with_turn[len(without_turn) :]

    def is_prefix_as_stop_str_enabled(self) -> bool:
        return self.prefix_as_stop_str_enabled

    # -- hooks: rendering ---------------------------------------------------------------------------------------------

    @abstractmethod
    def create_prompt(self, opts: dict[str, Any] | None = None) -> str:
        """The prompt text for the current history.

        Iterate `self.get_contents(opts)` (so SINGLE_TURN, omit_last_message and to_message_id work) and render a
        turn whose message is None as the open role prefix the model continues from. When chat mode is off, return
        the raw last user message.
        """

    def build_initial_prompt(self, chat_prompt: AbstractChatPrompt) -> None:
        """Called once when a session creates its prompt; override to pre-seed few-shot turns. Default: nothing."""

    # -- hooks: stopping and tokenizing -------------------------------------------------------------------------------

    # Presets name their stop strings here instead of overriding `get_stop_strs` (None: none).
    chat_stop_strs: tuple[str, ...] | None = None

    def get_stop_strs(self) -> list[str] | None:
        """Extra strings that end generation (never shown in the output). None or [] for none.

        The default gives `chat_stop_strs` in chat mode and None otherwise."""
        if not self.chat_mode or self.chat_stop_strs is None:
            return None
        return list(self.chat_stop_strs)

    def get_final_stop_strs(self) -> list[str]:
        """The stop strings the generator uses: the requester prefix (when enabled) then `get_stop_strs()`,
        without duplicates; [] when chat mode is off."""
        if not self.chat_mode:
            self.final_stop_strs = []
            return []
        candidates: list[str] = []
        if self.prefix_as_stop_str_enabled and self.responder_prefix_as_stop_str:
            candidates.append(self.responder_prefix_as_stop_str)
        candidates.extend(self.get_stop_strs() or [])
        final: list[str] = []
        for stop in candidates:
            if stop and stop not in final:
                final.append(stop)
        self.final_stop_strs = final
        return list(final)

    def _get_final_stop_strs(self) -> list[str]:
        """The reference's name for `get_final_stop_strs` (delegates, so overriding the public one is enough)."""
        return self.get_final_stop_strs()

    def get_stop_tokens(self) -> list[str]:
        """Special-token strings (e.g. "<|eot_id|>") whose token id ends generation, besides the tokenizer's EOS.

        Stop *strings* cannot do this job: special tokens are skipped when the output is decoded, so their text
        never appears. Tokens the tokenizer does not know as a single id are ignored by the generator. Default: [].
        """
        return []

    def get_add_special_tokens(self) -> bool | None:
        """How to tokenize the rendered prompt when ChatStream was not given `add_special_tokens`.

        None: let the tokenizer decide (`tokenizer(prompt)`); False: the prompt already holds BOS and friends, so add
        nothing; True: force them. Default: None.
        """
        return None

    # -- hooks: text replacement --------------------------------------------------------------------------------------

    def get_replacement_when_output(self) -> ReplacementPairs | None:
        """(old, new) pairs applied to the streamed output (rinna: "<NL>" -> newline). Default: []."""
        return []

    # -- echo length (kept for API compatibility; the engine returns only new tokens) ---------------------------------

    def get_custom_skip_echo_len(self, skip_echo_len: int) -> int:
        """Adjust the echoed-prompt length for models whose decode differs from the prompt text. Default: as is."""
        return skip_echo_len

    def get_skip_len(self, omit_last_message: bool = False) -> int:
        """Length of the prompt text without its special-token strings, through `get_custom_skip_echo_len`."""
        prompt = self.create_prompt({"omit_last_message": omit_last_message}) or ""
        for token in self.special_tokens or []:
            prompt = prompt.replace(token, "")
        return self.get_custom_skip_echo_len(len(prompt))

    # -- serialisation ------------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The history, system text, role labels and chat mode as plain data (for a DB). Stop-string settings,
        prompt TTL and the tokenizer are not included: they come back from the subclass `__init__`."""
        return {
            "system": self.system,
            **self._history_to_dict(),
            "requester": self.requester,
            "responder": self.responder,
            "chat_mode": self.chat_mode,
        }

    @classmethod
    def from_dict(cls: type[PromptT], data: dict[str, Any]) -> PromptT:
        """A new instance of this class (its `__init__` runs) carrying the state saved by `to_dict`."""
        prompt = cls()
        prompt.system = data.get("system", prompt.system)
        prompt.requester = data.get("requester", prompt.requester)
        prompt.responder = data.get("responder", prompt.responder)
        prompt.chat_mode = data.get("chat_mode", prompt.chat_mode)
        prompt._history_from_dict(data)
        return prompt
