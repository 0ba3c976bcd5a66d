"""OpenAI-compatible serving: from a parsed chat or completion request to a `Job` and its answer.

`OpenAIServing` owns what happens between the route and the `JobRunner`: rendering the prompt to
token ids (the chat template gets the request's tools and `chat_template_kwargs`), checking it
fits, the request's settings (`SamplingParams`), its output constraint (structured outputs, or
the grammar of a forced tool call) compiled in a worker thread before anything is queued, what
the answer shows (log-probs, the echoed prompt, tool calls) and the events of a streamed answer.

Every check that can fail runs before a slot is taken or an engine request exists: a bad field is
a 400 naming it, and nothing reaches the engine.

Size: one request may start at most `max_sequences` engine sequences (n x the number of
prompts): the larger of 8 (so every n the protocol allows works) and the server's run slots
(`--num-concurrent`), so one request never runs more sequences than the whole server lets run at
once. More is a 400 naming `n`, checked before anything is tokenized. A text that certainly has no
room in the context (`PromptMeasure`) is refused before it is tokenized, and big prompts are
rendered and tokenized on the tokenizing pool, off the event loop.

Length: a prompt that leaves no room is a 400; a max_tokens larger than the room left is
clamped to it (the choice then ends with finish_reason "length"), so clients that always send a
large max_tokens work with any context size.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from chatstream.chat_prompt.presets.chat_template import END_OF_TURN_TOKENS
from chatstream.engine.outputs import RequestDelta
from chatstream.engine.sampling_params import SamplingParams
from chatstream.engine.structured_output import StructuredOutput
from chatstream.facade.disconnect import DisconnectWatch
from chatstream.facade.prompt_bounds import PromptMeasure
from chatstream.http.openai import choices as answers
from chatstream.http.openai.choices import Choices, Presentation
from chatstream.http.openai.jobs import Job, JobRunner, SSEStream, error_event, new_id
from chatstream.http.openai.token_texts import TokenTexts
from chatstream.http.openai.tools import ToolPlan, plan_tools
from chatstream.http.openai_protocol import DONE_EVENT, ChatCompletionRequest, CompletionRequest, OpenAIError, sse

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from chatstream.http.openai.responses_serving import ResponsesServing

# Keyword arguments of apply_chat_template that the request sets through its own fields.
_TEMPLATE_OWN_KWARGS = frozenset({"conversation", "messages", "tools", "tokenize", "add_generation_prompt",
                                  "continue_final_message", "return_dict", "chat_template"})
MIN_SEQUENCES_PER_REQUEST = 8  # the protocol's largest n always fits


class OpenAIServing(JobRunner):
    """The /v1 chat and completion endpoints over one served model (its engine, tokenizer and admission)."""

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        tokenizer = self.context.tokenizer
        if tokenizer is None:
            raise OpenAIError(503, "the served model has no tokenizer", type="service_unavailable")
        return tokenizer

    @functools.cached_property
    def stop_token_ids(self) -> list[int]:
        """The end-of-turn tokens the vocabulary holds: a chat reply ends at its turn's end."""
        vocab = self.tokenizer.get_vocab()
        return [vocab[token] for token in END_OF_TURN_TOKENS if token in vocab]

    @functools.cached_property
    def token_texts(self) -> TokenTexts:
        return TokenTexts(self.tokenizer)

    @functools.cached_property
    def responses(self) -> ResponsesServing:
        """The Responses API over this serving, with its store of recent responses."""
        from chatstream.http.openai.responses_serving import ResponsesServing

        return ResponsesServing(self)

    # -- endpoints ---------------------------------------------------------------------------
    async def chat(self, request: ChatCompletionRequest,
                   disconnect_watch: DisconnectWatch) -> dict[str, Any] | SSEStream:
        self.check_model(request.model)
        self.check_size(1, request.n)
        tools = plan_tools(request.tools, request.tool_choice, request.parallel_tool_calls,
                           getattr(self.tokenizer, "chat_template", None))
        messages = request.template_messages()
        contents = [message["content"] for message in messages if isinstance(message.get("content"), str)]
        self.check_bound("".join(contents), "messages")
        ids = self.checked(await self.offloaded(sum(map(len, contents)), self.chat_prompt_ids, messages, tools,
                                                request.add_generation_prompt, request.continue_final_message,
                                                request.chat_template_kwargs), "messages")
        spec, field = self._constraint(request, tools)
        room = self.engine.max_model_len - len(ids)
        params = request.to_sampling_params(room, max_room=room, stop_token_ids=self.stop_token_ids,
                                            structured_output=spec)
        await self.check_params(params, field)
        show = Presentation(texts=self.token_texts, logprobs=params.logprobs, tools=tools)
        job = Job("chat", new_id("chatcmpl"), [ids], [params], request.n, request.include_usage, show)
        if request.stream:
            return await self.stream(job, disconnect_watch, self._events)
        choices = await self.collect(job, disconnect_watch)
        return choices.chat_completion(job.id, job.created, self.model_name)

    async def completion(self, request: CompletionRequest,
                         disconnect_watch: DisconnectWatch) -> dict[str, Any] | SSEStream:
        self.check_model(request.model)
        tokenizer = self.tokenizer
        texts = request.prompts()
        self.check_size(len(texts), request.n)
        prompts = []
        for prompt in texts:
            if isinstance(prompt, str):
                self.check_bound(prompt, "prompt")
                prompt = await self.offloaded(len(prompt), functools.partial(
                    tokenizer.encode, add_special_tokens=request.add_special_tokens), prompt)
            prompts.append(self.checked(prompt, "prompt"))
        spec, field = request.structured_output()
        max_model_len = self.engine.max_model_len
        params = [request.to_sampling_params(max_model_len - len(ids), max_room=max_model_len - len(ids),
                                             structured_output=spec) for ids in prompts]
        for p in params:
            await self.check_params(p, field)
        echo = tuple(t if isinstance(t, str) else tokenizer.decode(t) for t in texts) if request.echo else ()
        show = Presentation(texts=self.token_texts, logprobs=request.logprobs, echo_texts=echo,
                            echo_token_ids=tuple(tuple(ids) for ids in prompts) if request.echo else (),
                            keep_output=request.keeps_output)
        job = Job("completion", new_id("cmpl"), prompts, params, request.n, request.include_usage, show)
        if request.stream:
            return await self.stream(job, disconnect_watch, self._events)
        choices = await self.collect(job, disconnect_watch)
        return choices.text_completion(job.id, job.created, self.model_name)

    # -- request checks ----------------------------------------------------------------------
    @property
    def max_sequences(self) -> int:
        """The most engine sequences (n x prompts) one request may start."""
        return max(MIN_SEQUENCES_PER_REQUEST, self.context.admission.max_running)

    def check_size(self, num_prompts: int, n: int) -> None:
        if num_prompts * n > self.max_sequences:
            raise OpenAIError(400, f"n x prompts = {n} x {num_prompts} = {num_prompts * n} sequences; one request may "
                                   f"ask for at most {self.max_sequences}", param="n")

    @functools.cached_property
    def measure(self) -> PromptMeasure:
        return PromptMeasure(self.tokenizer)

    def check_bound(self, text: str, param: str) -> None:
        """Refuse, before tokenizing, a text that certainly has no room in the context (see `PromptMeasure`)."""
        num_tokens, max_model_len = self.measure.min_tokens(text), self.engine.max_model_len
        if num_tokens >= max_model_len:
            raise OpenAIError(400, f"{param}: the prompt has at least {num_tokens} tokens ({len(text)} characters); "
                                   f"the context holds {max_model_len}", param=param, code="context_length_exceeded")

    async def offloaded(self, size: int, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)`, on the tokenizing pool when `size` (characters) is big."""
        offload = self.context.offload
        return fn(*args) if offload is None else await offload.run(size, fn, *args)

    def check_model(self, model: str | None) -> None:
        if model and model != self.model_name:  # an empty model means "the one you serve"
            raise OpenAIError(404, f"The model `{model}` does not exist; this server serves `{self.model_name}`",
                              param="model", code="model_not_found")

    def chat_prompt_ids(self, messages: list[dict[str, Any]], tools: ToolPlan | None = None,
                        add_generation_prompt: bool = True, continue_final_message: bool = False,
                        template_kwargs: dict[str, Any] | None = None) -> list[int]:
        tokenizer = self.tokenizer
        if not getattr(tokenizer, "chat_template", None):
            raise OpenAIError(400, "the served model's tokenizer has no chat template; use /v1/completions",
                              param="messages")
        extra = dict(template_kwargs or {})
        clash = sorted(_TEMPLATE_OWN_KWARGS & extra.keys())
        if clash:
            raise OpenAIError(400, f"chat_template_kwargs may not set {', '.join(clash)}", param="chat_template_kwargs")
        try:
            text = tokenizer.apply_chat_template(
                messages, tools=tools.template_tools() if tools is not None else None, tokenize=False,
                add_generation_prompt=add_generation_prompt, continue_final_message=continue_final_message, **extra)
        except Exception as exc:  # noqa: BLE001 - templates raise on messages they reject (e.g. role order)
            raise OpenAIError(400, f"the chat template rejected the messages: {exc}", param="messages") from exc
        # The template already holds the special tokens the model wants (BOS included).
        return list(tokenizer.encode(text, add_special_tokens=False))

    def checked(self, ids: list[int], param: str) -> list[int]:
        try:
            self.engine.validate_prompt(ids)
        except ValueError as exc:
            too_long = len(ids) >= self.engine.max_model_len
            raise OpenAIError(400, f"{param}: {exc}", param=param,
                              code="context_length_exceeded" if too_long else None) from exc
        return ids

    async def check_params(self, params: SamplingParams, constraint_field: str | None) -> None:
        """What only the engine can judge: token ids within its vocabulary, and the grammar (compiled
        in a worker thread and cached, so the engine later finds it ready)."""
        try:
            self.engine.validate_params(params)
        except ValueError as exc:
            raise OpenAIError(400, str(exc), param="logit_bias") from exc
        if params.structured_output is not None:
            try:
                await self.engine.prepare_grammar(params.structured_output)
            except ValueError as exc:
                raise OpenAIError(400, f"{constraint_field}: {exc}", param=constraint_field) from exc

    @staticmethod
    def _constraint(request: ChatCompletionRequest,
                    tools: ToolPlan | None) -> tuple[StructuredOutput | None, str | None]:
        spec, field = request.structured_output()
        forced = tools.grammar() if tools is not None else None
        if forced is None:
            return spec, field
        if spec is not None:
            raise OpenAIError(400, f"{field} cannot be combined with tool_choice {tools.choice!r}",  # type: ignore[union-attr]
                              param=field)
        return forced, "tools"

    # -- streamed answers --------------------------------------------------------------------
    async def _events(self, job: Job, choices: Choices,
                      deltas: AsyncIterator[tuple[int, RequestDelta]]) -> AsyncGenerator[str, None]:
        chat = job.kind == "chat"

        def chunk(items: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> str:
            if chat:
                return sse(answers.chat_chunk(job.id, job.created, self.model_name, items, job.include_usage, usage))
            return sse(answers.text_completion(job.id, job.created, self.model_name, items, usage,
                                               job.include_usage))

        try:
            if chat:  # OpenAI opens every choice with the role
                for i in range(len(choices.items)):
                    yield chunk([answers.chat_chunk_choice(i, {"role": "assistant", "content": ""})])
            async for index, delta in deltas:
                if chat:
                    for item in choices.chat_chunk_choices(index, delta):
                        yield chunk([item])
                else:
                    item = choices.text_chunk_choice(index, delta)
                    if item is not None:
                        yield chunk([item])
            if job.include_usage:
                yield chunk([], choices.usage())
            yield DONE_EVENT
        except Exception as exc:  # noqa: BLE001 - the status line is sent; OpenAI clients raise on this event
            yield sse(error_event(exc))
