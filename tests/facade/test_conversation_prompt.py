"""A stored conversation as a ChatPrompt, and the next prompt from the previous reply's stored ids
(`continuation_ids`): exactly those ids plus the newly rendered turn, or a stated reason to re-render."""

from __future__ import annotations

import pytest

from chatstream import ChatPromptChatTemplate, ChatPromptDatabricksDolly
from chatstream.chat_prompt.prompt_ttl import PromptTTL
from chatstream.conversations import Conversation, Message, TurnTokens
from chatstream.facade.conversation_prompt import chat_prompt_of, continuation_ids, prompt_model_id

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|endoftext|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
IDS = iter(f"00000000-0000-4000-8000-{i:012d}" for i in range(10_000))


@pytest.fixture(scope="module")
def tokenizer():
    from tiny_models import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    tokenizer.chat_template = CHATML
    return tokenizer


def _factory(clazz, tokenizer):
    def create():
        prompt = clazz()
        prompt.set_tokenizer(tokenizer)
        return prompt

    return create


def _message(role: str, text: str, tokens: TurnTokens | None = None, status: str = "complete") -> Message:
    return Message(next(IDS), role, text, 1.0, status=status, tokens=tokens)


def _conversation(*messages: Message, system: str = "") -> Conversation:
    return Conversation(next(IDS), "s" * 20, "", system, 1.0, 1.0, tuple(messages))


def _first_turn(tokenizer, clazz, reply: str, *, end_of_turn: bool = True, system: str = ""):
    """A conversation whose first reply stored the ids its turn saw and wrote, and a second turn open."""
    create = _factory(clazz, tokenizer)
    opening = _conversation(_message("user", "hello there"), _message("assistant", "", status="streaming"),
                            system=system)
    prompt_ids = tokenizer.encode(chat_prompt_of(opening, create).create_prompt(), add_special_tokens=False)
    output_ids = tokenizer.encode(reply, add_special_tokens=False) + ([tokenizer.eos_token_id] if end_of_turn else [])
    model_id = prompt_model_id("tiny", chat_prompt_of(opening, create))
    tokens = TurnTokens(model_id, tuple(prompt_ids), tuple(output_ids))
    conversation = _conversation(opening.messages[0], _message("assistant", reply, tokens),
                                 _message("user", "the quick brown fox"), _message("assistant", "", status="streaming"),
                                 system=system)
    return conversation, create, tokens, model_id


def test_the_next_prompt_is_the_stored_ids_then_only_the_new_turn(tokenizer) -> None:
    conversation, create, tokens, model_id = _first_turn(tokenizer, ChatPromptChatTemplate, "a lazy dog sleeps")
    chat_prompt = chat_prompt_of(conversation, create)
    result = continuation_ids(chat_prompt, conversation, model_id, tokenizer, [tokenizer.eos_token_id])
    stored = list(tokens.all_token_ids)
    assert result.token_ids is not None, result.reason
    # The stored end-of-turn token is the format's own: it stays, and what follows it is new.
    assert result.token_ids[:len(stored)] == stored
    assert tokenizer.decode(result.token_ids[len(stored):]) == (
        "\n<|im_start|>user\nthe quick brown fox<|endoftext|>\n<|im_start|>assistant\n")
    # The same text as re-rendering the whole history: only the ids of the earlier turns differ in kind.
    assert tokenizer.decode(result.token_ids) == chat_prompt.create_prompt()


def test_an_end_of_sequence_the_format_does_not_write_is_left_out(tokenizer) -> None:
    conversation, create, tokens, model_id = _first_turn(tokenizer, ChatPromptDatabricksDolly, "a lazy dog sleeps")
    chat_prompt = chat_prompt_of(conversation, create)
    result = continuation_ids(chat_prompt, conversation, model_id, tokenizer, [tokenizer.eos_token_id])
    stored = list(tokens.all_token_ids)[:-1]  # the EOS: Dolly's format has plain text after a reply
    assert result.token_ids is not None and result.token_ids[:len(stored)] == stored
    assert tokenizer.eos_token_id not in result.token_ids
    assert tokenizer.decode(result.token_ids) == chat_prompt.create_prompt()


def test_a_reply_cut_by_its_length_continues_with_the_formats_end_of_turn(tokenizer) -> None:
    conversation, create, tokens, model_id = _first_turn(tokenizer, ChatPromptChatTemplate, "a lazy dog",
                                                         end_of_turn=False)
    chat_prompt = chat_prompt_of(conversation, create)
    result = continuation_ids(chat_prompt, conversation, model_id, tokenizer, [tokenizer.eos_token_id])
    stored = list(tokens.all_token_ids)
    assert result.token_ids is not None and result.token_ids[:len(stored)] == stored
    assert tokenizer.decode(result.token_ids[len(stored):]).startswith("<|endoftext|>\n<|im_start|>user\n")


def test_when_stored_ids_cannot_be_used_the_reason_is_given(tokenizer) -> None:
    conversation, create, tokens, model_id = _first_turn(tokenizer, ChatPromptChatTemplate, "a lazy dog sleeps")

    def reason(conversation: Conversation, model_id: str = model_id, clazz=ChatPromptChatTemplate,
               ttl: PromptTTL | None = None) -> str:
        chat_prompt = chat_prompt_of(conversation, _factory(clazz, tokenizer))
        if ttl is not None:
            chat_prompt.set_prompt_ttl(ttl)
        result = continuation_ids(chat_prompt, conversation, model_id, tokenizer, [tokenizer.eos_token_id])
        assert result.token_ids is None
        return result.reason

    first, reply, user, open_reply = conversation.messages
    assert reason(_conversation(first, open_reply)) == "first turn"
    no_ids = Message(reply.id, "assistant", reply.text, 1.0)
    assert reason(_conversation(first, no_ids, user, open_reply)) == "the previous reply has no stored token ids"
    assert "another model" in reason(conversation, model_id="another-model|x|y")
    # The system text is part of what the ids stand for: a changed one gives another model id.
    changed = _conversation(*conversation.messages, system="Be brief.")
    chat_prompt = chat_prompt_of(changed, create)
    assert prompt_model_id("tiny", chat_prompt) != model_id
    edited = Message(reply.id, "assistant", "an edited reply", 1.0, tokens=tokens)
    assert "decode" in reason(_conversation(first, edited, user, open_reply))
    assert "renders the earlier turns differently" in reason(conversation, ttl=PromptTTL.SINGLE_TURN)


def test_a_conversation_becomes_the_prompt_classes_history(tokenizer) -> None:
    conversation = _conversation(_message("user", "first"), _message("assistant", "one"),
                                 _message("user", "second"), _message("assistant", "partial", status="interrupted"),
                                 _message("user", "third"), _message("assistant", "", status="streaming"),
                                 system="You answer briefly.")
    chat_prompt = chat_prompt_of(conversation, _factory(ChatPromptDatabricksDolly, tokenizer))
    assert chat_prompt.get_system() == "You answer briefly."
    assert [c.get_message() for c in chat_prompt.requester_messages] == ["first", "second", "third"]
    assert [c.get_message() for c in chat_prompt.responder_messages] == ["one", "partial", None]  # the open reply is the one to write
    assert [c.get_message_id() for c in chat_prompt.chat_contents] == [m.id for m in conversation.messages]
    # No system text: the preset's own.
    plain = chat_prompt_of(_conversation(_message("user", "x")), _factory(ChatPromptDatabricksDolly, tokenizer))
    assert plain.get_system() == ChatPromptDatabricksDolly().get_system()
