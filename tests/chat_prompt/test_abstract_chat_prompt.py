"""AbstractChatPrompt: state, history editing and its errors, get_contents options, stop strings, hooks,
serialisation, and a user-written subclass."""

from __future__ import annotations

from typing import Any

import pytest

from chatstream.chat_prompt import AbstractChatPrompt, ChatContent, PromptTTL, RoleType


class LinePrompt(AbstractChatPrompt):
    """What a user writes: roles in __init__, create_prompt over get_contents, nothing else."""

    def __init__(self) -> None:
        super().__init__()
        self.set_requester("User")
        self.set_responder("Bot")

    def create_prompt(self, opts: dict[str, Any] | None = None) -> str:
        if not self.chat_mode:
            return self.get_requester_last_msg() or ""
        out = self.system
        for content in self.get_contents(opts):
            if content.get_message() is None:
                out += f"{content.get_role()}:"
            else:
                out += f"{content.get_role()}: {content.get_message()}\n"
        return out


def fixed_history(prompt: AbstractChatPrompt) -> AbstractChatPrompt:
    prompt.add_requester_msg("Q1 line1\nline2")
    prompt.add_responder_msg("A1")
    prompt.add_requester_msg("Q2")
    prompt.add_responder_msg(None)
    return prompt


def test_initial_state() -> None:
    prompt = LinePrompt()
    assert prompt.system == "" and prompt.chat_contents == []
    assert prompt.requester_messages == [] and prompt.responder_messages == []
    assert prompt.chat_mode is True and prompt.special_tokens is None
    assert prompt.prefix_as_stop_str_enabled is False and prompt.responder_prefix_as_stop_str is None
    assert prompt.final_stop_strs is None and prompt.prompt_ttl_mode == PromptTTL.MULTI_TURN


def test_only_create_prompt_is_abstract() -> None:
    with pytest.raises(TypeError):
        AbstractChatPrompt()  # type: ignore[abstract]
    assert AbstractChatPrompt.__abstractmethods__ == frozenset({"create_prompt"})


def test_user_subclass_works_with_defaults() -> None:
    prompt = fixed_history(LinePrompt())
    prompt.build_initial_prompt(prompt)  # default: no-op
    assert prompt.create_prompt() == "User: Q1 line1\nline2\nBot: A1\nUser: Q2\nBot:"
    assert prompt.get_stop_strs() is None and prompt.get_final_stop_strs() == []
    assert prompt.get_stop_tokens() == [] and prompt.get_add_special_tokens() is None
    assert prompt.get_replacement_when_output() == [] and prompt.get_replacement_when_input() == []
    prompt.set_prefix_as_stop_str_enabled(True)
    assert prompt.get_final_stop_strs() == ["User:"] and prompt.is_empty()


def test_user_subclass_with_few_shot_initial_prompt() -> None:
    class FewShot(LinePrompt):
        def build_initial_prompt(self, chat_prompt: AbstractChatPrompt) -> None:
            chat_prompt.add_requester_msg("Who sank?")
            chat_prompt.add_responder_msg("The Titanic.")

    prompt = FewShot()
    prompt.build_initial_prompt(prompt)
    prompt.add_requester_msg("When?")
    prompt.add_responder_msg(None)
    assert prompt.create_prompt() == "User: Who sank?\nBot: The Titanic.\nUser: When?\nBot:"
    assert prompt.get_turn() == 2


def test_history_accessors() -> None:
    prompt = LinePrompt()
    assert prompt.is_empty() and prompt.get_turn() == 0
    assert prompt.get_requester_last_msg() is None and prompt.get_responder_last_msg() is None
    fixed_history(prompt)
    assert not prompt.is_empty() and prompt.get_turn() == 2
    # ChatContent objects, as in the original (`requester_messages[-1].get_message()`)
    assert [c.get_message() for c in prompt.requester_messages] == ["Q1 line1\nline2", "Q2"]
    assert [c.get_message() for c in prompt.responder_messages] == ["A1", None]
    assert prompt.requester_messages[-1].get_message() == "Q2"
    assert all(isinstance(c, ChatContent) for c in prompt.responder_messages)
    assert prompt.get_requester_last_msg() == "Q2" and prompt.get_responder_last_msg() is None
    assert [c.get_role_type() for c in prompt.chat_contents] == [RoleType.REQUESTER, RoleType.RESPONDER] * 2
    assert prompt.is_requester_role("User") and not prompt.is_requester_role("Bot")
    prompt.clear_history()
    assert prompt.is_empty()


def test_child_message_arguments() -> None:
    prompt = LinePrompt()
    prompt.add_requester_msg("q", child_message="c")
    prompt.add_requester_msg("q", child_messages=["c1", "c2"])
    assert prompt.chat_contents[0].get_child_messages() == ["c"]
    assert prompt.chat_contents[1].get_child_messages() == ["c1", "c2"]
    with pytest.raises(ValueError, match="not both"):
        prompt.add_requester_msg("q", child_message="c", child_messages=["d"])
    for bad in ([], ["ok", 3], "not a list", ("tuple",)):
        with pytest.raises(ValueError, match="non-empty list of str"):
            prompt.add_requester_msg("q", child_messages=bad)  # type: ignore[arg-type]
    assert len(prompt.chat_contents) == 2  # rejected calls add nothing


def test_input_replacements_apply_on_insertion() -> None:
    class Shouting(LinePrompt):
        def get_replacement_when_input(self) -> list[tuple[str, str]]:
            return [("a", "A"), ("b", "B")]

    prompt = Shouting()
    prompt.add_requester_msg("abc", child_message="bad")
    prompt.add_responder_msg("abc")  # replies are not user input
    assert prompt.get_requester_last_msg() == "ABc"
    assert prompt.chat_contents[0].get_child_messages() == ["BAd"]
    assert prompt.get_responder_last_msg() == "abc"
    assert prompt.replace_string("aab", [("a", "x")]) == "xxb" and prompt.replace_string(None, [("a", "x")]) is None


def test_responder_updates_and_ids() -> None:
    prompt = fixed_history(LinePrompt())
    prompt.set_responder_last_msg("A2 partial")
    prompt.set_responder_last_msg_id("r2")
    assert prompt.get_responder_last_msg() == "A2 partial"
    assert prompt.find_chat_content_by_message_id("r2") is prompt.chat_contents[-1]
    assert prompt.find_chat_content_by_message_id("missing") is None
    prompt.clear_last_responder_message()
    assert prompt.get_responder_last_msg() is None
    prompt.add_requester_msg("Q3")
    prompt.clear_last_responder_message()  # last turn is the user's: nothing to clear
    assert [c.get_message() for c in prompt.responder_messages] == ["A1", None]

    empty = LinePrompt()
    with pytest.raises(ValueError):
        empty.set_responder_last_msg("x")
    with pytest.raises(ValueError):
        empty.set_responder_last_msg_id("x")


def test_remove_last_messages_and_errors() -> None:
    prompt = fixed_history(LinePrompt())
    with pytest.raises(ValueError):
        prompt.remove_last_requester_msg()  # last turn is the responder's
    prompt.remove_last_responder_msg()
    with pytest.raises(ValueError):
        prompt.remove_last_responder_msg()  # now the last turn is the requester's
    prompt.remove_last_requester_msg()
    assert [c.get_message() for c in prompt.requester_messages] == ["Q1 line1\nline2"]
    assert [c.get_message() for c in prompt.responder_messages] == ["A1"]
    prompt.clear_history()
    with pytest.raises(IndexError):
        prompt.remove_last_requester_msg()
    with pytest.raises(IndexError):
        prompt.remove_last_responder_msg()


def test_get_contents_omit_last_message_leaves_history_alone() -> None:
    prompt = fixed_history(LinePrompt())
    prompt.set_responder_last_msg("A2 so far")
    contents = prompt.get_contents({"omit_last_message": True})
    assert contents[-1].get_message() is None
    assert prompt.get_responder_last_msg() == "A2 so far"
    assert prompt.create_prompt({"omit_last_message": True}).endswith("User: Q2\nBot:")
    assert prompt.create_prompt().endswith("Bot: A2 so far\n")


def test_get_contents_to_message_id() -> None:
    prompt = LinePrompt()
    prompt.add_requester_msg("Q1", message_id="u1")
    prompt.add_responder_msg("A1", message_id="r1")
    prompt.add_requester_msg("Q2", message_id="u2")
    prompt.add_responder_msg("A2", message_id="r2")
    assert [c.get_message() for c in prompt.get_contents({"to_message_id": "r1"})] == ["Q1", "A1"]
    assert prompt.create_prompt({"to_message_id": "u2"}) == "User: Q1\nBot: A1\nUser: Q2\n"
    # an unknown id keeps the whole history, as in the original
    assert len(prompt.get_contents({"to_message_id": "nope"})) == 4


def test_single_turn_keeps_the_last_exchange() -> None:
    prompt = fixed_history(LinePrompt())
    prompt.set_prompt_ttl(PromptTTL.SINGLE_TURN)
    assert prompt.get_prompt_ttl() == PromptTTL.SINGLE_TURN
    assert [c.get_message() for c in prompt.get_contents()] == ["Q2", None]
    assert prompt.create_prompt() == "User: Q2\nBot:"
    prompt.remove_last_responder_msg()  # history ending with a user turn: not the previous answer
    assert prompt.create_prompt() == "User: Q2\n"
    assert len(prompt.chat_contents) == 3  # the history itself is kept


def test_chat_mode_off() -> None:
    prompt = fixed_history(LinePrompt())
    prompt.set_prefix_as_stop_str_enabled(True)
    fixed_history(prompt)
    prompt.set_chat_mode_enabled(False)
    assert not prompt.is_chat_mode_enabled()
    assert prompt.create_prompt() == "Q2"
    assert prompt.get_final_stop_strs() == [] and prompt._get_final_stop_strs() == []


def test_final_stop_strs_order_dedupe_and_alias() -> None:
    class Stopping(LinePrompt):
        def get_stop_strs(self) -> list[str]:
            return ["User:", "</s>", "</s>"]

    prompt = Stopping()
    assert prompt.get_final_stop_strs() == ["User:", "</s>"]
    prompt.set_prefix_as_stop_str_enabled(True)
    assert prompt.responder_prefix_as_stop_str == "User:"
    assert prompt.get_final_stop_strs() == ["User:", "</s>"] == prompt._get_final_stop_strs()
    assert prompt.final_stop_strs == ["User:", "</s>"]
    prompt.set_prefix_as_stop_str_enabled(False)
    assert prompt.responder_prefix_as_stop_str is None


def test_prefix_as_stop_str_clears_history_and_survives_chat_mode_off() -> None:
    prompt = fixed_history(LinePrompt())
    prompt.set_chat_mode_enabled(False)
    prompt.set_prefix_as_stop_str_enabled(True)
    assert prompt.is_empty() and prompt.is_prefix_as_stop_str_enabled()
    assert prompt.responder_prefix_as_stop_str == "User:" and not prompt.is_chat_mode_enabled()


def test_prefix_as_stop_str_empty_prefix_raises() -> None:
    class Silent(AbstractChatPrompt):
        def create_prompt(self, opts: dict[str, Any] | None = None) -> str:
            return "".join(c.get_message() or "" for c in self.get_contents(opts))

    with pytest.raises(ValueError, match="requester prefix"):
        Silent().set_prefix_as_stop_str_enabled(True)


class FakeTokenizer:
    special_tokens_map = {"bos_token": "<s>", "eos_token": "</s>", "additional_special_tokens": ["<x>"]}
    all_special_tokens = ["<s>", "</s>", "<x>"]


def test_set_tokenizer_and_skip_len() -> None:
    class WithSpecials(LinePrompt):
        def create_prompt(self, opts: dict[str, Any] | None = None) -> str:
            return "<s>" + super().create_prompt(opts) + "</s>"

        def get_custom_skip_echo_len(self, skip_echo_len: int) -> int:
            return skip_echo_len + 100

    prompt = WithSpecials()
    tokenizer = FakeTokenizer()
    prompt.set_tokenizer(tokenizer)
    assert prompt.get_tokenizer() is tokenizer
    assert prompt.special_tokens == ["<s>", "</s>", "<x>"]
    prompt.add_requester_msg("hi")
    prompt.add_responder_msg("yo")
    assert prompt.get_skip_len() == len("User: hi\nBot: yo\n") + 100
    assert prompt.get_skip_len(omit_last_message=True) == len("User: hi\nBot:") + 100
    assert LinePrompt().get_custom_skip_echo_len(7) == 7


def test_to_dict_from_dict_round_trip() -> None:
    prompt = fixed_history(LinePrompt())
    prompt.set_system("SYS\n")
    prompt.chat_contents[0].add_child_message("child")
    prompt.set_responder_last_msg_id("r2")
    prompt.set_prompt_ttl(PromptTTL.SINGLE_TURN)  # not serialised
    data = prompt.to_dict()
    assert data["system"] == "SYS\n" and data["requester"] == "User" and data["responder"] == "Bot"
    assert data["chat_mode"] is True
    # the per-side lists hold content records, as the original's from_dict expects
    assert [d["message"] for d in data["requester_messages"]] == ["Q1 line1\nline2", "Q2"]
    assert [d["message"] for d in data["responder_messages"]] == ["A1", None]
    assert data["responder_messages"][-1]["message_id"] == "r2"
    assert data["chat_contents"][0]["role_type"] == "REQUESTER"
    assert data["chat_contents"][0]["child_messages"] == ["child"]

    restored = LinePrompt.from_dict(data)
    assert isinstance(restored, LinePrompt)
    assert restored.to_dict() == data
    assert restored.chat_contents == prompt.chat_contents
    assert restored.get_prompt_ttl() == PromptTTL.MULTI_TURN  # comes from __init__, not the record
    assert restored.create_prompt() == "SYS\nUser: Q1 line1\nline2\nBot: A1\nUser: Q2\nBot:"


def test_from_dict_infers_sides_of_records_without_role_types() -> None:
    record = {
        "chat_contents": [{"role": "User", "message": "q"}, {"role": "Bot", "message": "a"}],
        "chat_mode": False,
    }
    restored = LinePrompt.from_dict(record)
    assert [c.get_role_type() for c in restored.chat_contents] == [RoleType.REQUESTER, RoleType.RESPONDER]
    assert restored.get_turn() == 1 and restored.is_chat_mode_enabled() is False
    assert restored.chat_contents[0] == ChatContent("User", "q", None, RoleType.REQUESTER)
