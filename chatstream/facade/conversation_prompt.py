"""A stored conversation as a ChatPrompt, and the token ids its next reply continues from.

The store keeps what people see: user texts as typed, replies as shown (after the output
replacements). `chat_prompt_of` turns that back into the prompt class's history: the preset's
initial turns (`build_initial_prompt`), the conversation's system text (or the preset's own when it
has none), then the messages, replies passed through the prompt's input replacements (rinna's
newline -> "<NL>", the inverse of its output rule), the open reply last.

`continuation_ids` is how every earlier turn comes from the prefix cache. The previous reply
stored the exact ids its engine request saw and produced (end-of-turn token included), so the
next prompt is those ids plus only the newly rendered part: what the prompt format puts after
that reply (end of turn, the new user message, the assistant prefix). Re-rendering and
re-tokenizing the whole history instead gives different ids wherever a reply's text does not
re-tokenize to the ids that were generated, and the cache then matches only up to there. The
stored ids are used only when they stand for exactly this history, rendered this way; otherwise
the answer says why not and the caller re-renders:

- no earlier reply, or it has no ids (the generator mock, an import without them);
- another model, prompt format or system text (`model_id` names all three: `prompt_model_id`);
- the reply's text is not what its ids decode to (it ended on a stop string, its text was
  edited, or its ids are not this model's);
- the prompt format renders the earlier turns differently once a new turn follows (SINGLE_TURN,
  templates that rewrite history).

The caller also re-renders when stored ids plus the new turn no longer fit the context (older
exchanges must be left out). ARCHITECTURE.md ("Every earlier turn from the prefix cache") says the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chatstream.chat_prompt.chat_history import apply_replacements
from chatstream.conversations import Conversation, Message
from chatstream.facade.output_replacement import visible_reply

if TYPE_CHECKING:
    from chatstream.chat_prompt.abstract_chat_prompt import AbstractChatPrompt

MAX_MODEL_ID_CHARS = 500


def chat_prompt_of(conversation: Conversation, create_chat_prompt: Callable[[], AbstractChatPrompt],
                   messages: Sequence[Message] | None = None,
                   into: AbstractChatPrompt | None = None) -> AbstractChatPrompt:
    """The conversation (or its first `messages`) as a fresh ChatPrompt, or written `into` an
    existing one (its history and system text replaced); a `streaming` reply is the open
    responder turn."""
    chat_prompt = create_chat_prompt()
    if into is not None:
        into.chat_contents = chat_prompt.chat_contents  # the preset's initial turns
        into.set_system(chat_prompt.get_system())
        chat_prompt = into
    if conversation.system:
        chat_prompt.set_system(conversation.system)
    pairs = chat_prompt.get_replacement_when_input()
    for message in conversation.messages if messages is None else messages:
        if message.role == "user":
            chat_prompt.add_requester_msg(message.text, message_id=message.id)
        elif message.status == "streaming":
            chat_prompt.add_responder_msg(None, message_id=message.id)
        else:
            chat_prompt.add_responder_msg(apply_replacements(message.text, pairs), message_id=message.id)
    return chat_prompt


def prompt_model_id(model_name: str, chat_prompt: AbstractChatPrompt) -> str:
    """What stored ids belong to: the model (its tokenizer), the prompt class and the system text.
    Ids stored under another model id are never continued from."""
    system = hashlib.sha256(chat_prompt.get_system().encode("utf-8", "surrogatepass")).hexdigest()[:16]
    prompt_format = f"{type(chat_prompt).__module__}.{type(chat_prompt).__qualname__}"
    return f"{model_name[:MAX_MODEL_ID_CHARS - len(prompt_format) - 20]}|{prompt_format}|{system}"


def tokenizer_model_name(tokenizer: Any) -> str:
    """A name for the tokenizer's vocabulary: its source and size."""
    name = str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)
    try:
        size = len(tokenizer)
    except TypeError:
        size = 0
    return f"{name}#{size}"


@dataclass(frozen=True)
class Continuation:
    """`token_ids`: the prompt from stored ids (None: re-render); `reason`: why not, or how."""

    token_ids: list[int] | None
    reason: str


def continuation_ids(chat_prompt: AbstractChatPrompt, conversation: Conversation, model_id: str, tokenizer: Any,
                     end_of_turn_ids: Sequence[int]) -> Continuation:
    """The prompt ids for the conversation's open reply from the previous reply's stored ids (see
    the module docstring). `chat_prompt` is `chat_prompt_of(conversation, ...)`; `end_of_turn_ids`
    are the ids that end a reply (EOS and the prompt's stop tokens)."""
    messages = conversation.messages
    if len(messages) < 4 or messages[-1].status != "streaming":
        return Continuation(None, "first turn")
    previous = messages[-3]
    tokens = previous.tokens
    if tokens is None or not tokens.output_token_ids:
        return Continuation(None, "the previous reply has no stored token ids")
    if tokens.model_id != model_id:
        return Continuation(None, "the stored ids belong to another model, prompt format or system text")
    output_ids = list(tokens.output_token_ids)
    ends_turn = output_ids[-1] in end_of_turn_ids
    decoded = tokenizer.decode(output_ids[:-1] if ends_turn else output_ids, skip_special_tokens=True)
    replacements = chat_prompt.get_replacement_when_output() if chat_prompt.is_chat_mode_enabled() else None
    # A reply cut by its length limit may end inside a character: its ids then decode to a trailing
    # U+FFFD that the shown text never had. The ids are still what the model saw and wrote.
    decoded = visible_reply(decoded, replacements, final=True).strip()
    if decoded != previous.text and decoded.rstrip("\ufffd").strip() != previous.text:
        return Continuation(None, "the previous reply's text is not what its ids decode to")
    before = chat_prompt.create_prompt({"to_message_id": previous.id, "omit_last_message": True})
    reply = chat_prompt.find_chat_content_by_message_id(previous.id)
    reply_text = (reply.get_message() if reply is not None else None) or ""
    full = chat_prompt.create_prompt()
    if not full.startswith(before + reply_text):
        return Continuation(None, "the prompt format renders the earlier turns differently now")
    new_ids = list(tokenizer.encode(full[len(before) + len(reply_text):], add_special_tokens=False))
    stored = list(tokens.all_token_ids)
    if ends_turn:
        # The stored end-of-turn token stays when the format's own text after a reply starts with
        # it (ChatML's <|im_end|>); otherwise (EOS where the format has plain text) it goes, as
        # re-rendering would not have it either. Its KV was never computed, so the cache loses nothing.
        if new_ids[:1] == output_ids[-1:]:
            new_ids = new_ids[1:]
        else:
            stored = stored[:-1]
    return Continuation(stored + new_ids, f"continued from {len(stored)} stored ids + {len(new_ids)} new")
