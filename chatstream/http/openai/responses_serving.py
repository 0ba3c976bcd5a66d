"""Serving `POST /v1/responses`: a Responses API request as one engine request, whole or streamed.

The conversation is the chained response's stored conversation (`previous_response_id`), then
this request's input; `instructions` go first as a system message and are not stored. The prompt
is rendered by the model's chat template and runs through the same `JobRunner` as chat (one
admission slot, disconnects abort, 400s before anything is queued). A completed response is
stored unless `store` is false.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from chatstream.engine.outputs import RequestDelta
from chatstream.facade.disconnect import DisconnectWatch
from chatstream.http.openai.choices import Choices
from chatstream.http.openai.jobs import Job, SSEStream, engine_error, new_id, now
from chatstream.http.openai.response_store import ResponseStore, StoredResponse
from chatstream.http.openai.responses_api import (
    EventWriter,
    ResponsesRequest,
    output_message,
    output_text,
    response_object,
    responses_usage,
    status_of,
)
from chatstream.http.openai.wire import OpenAIError
from chatstream.http.openai_serving import OpenAIServing


class ResponsesServing:
    def __init__(self, serving: OpenAIServing, store: ResponseStore | None = None) -> None:
        self.serving = serving
        self.store = store or ResponseStore()

    async def create(self, request: ResponsesRequest, disconnect_watch: DisconnectWatch) -> dict[str, Any] | SSEStream:
        serving = self.serving
        serving.check_model(request.model)
        request.check_supported()
        conversation = self._history(request) + request.input_messages()
        system = [{"role": "system", "content": request.instructions}] if request.instructions else []
        messages = system + conversation
        contents = [message["content"] for message in messages if isinstance(message.get("content"), str)]
        serving.check_bound("".join(contents), "input")
        ids = serving.checked(await serving.offloaded(sum(map(len, contents)), serving.chat_prompt_ids, messages),
                              "input")
        spec = request.structured_output()
        params = request.to_sampling_params(serving.engine.max_model_len - len(ids), serving.stop_token_ids, spec)
        await serving.check_params(params, "text.format")
        job = Job("response", new_id("resp").replace("-", "_"), [ids], [params])
        item_id = new_id("msg").replace("-", "_")
        if request.stream:
            return await serving.stream(job, disconnect_watch,
                                        lambda j, c, d: self._events(request, conversation, j, c, d, item_id))
        choices = await serving.collect(job, disconnect_watch)
        return self._finish(request, conversation, job, choices, item_id)

    def _history(self, request: ResponsesRequest) -> list[dict[str, Any]]:
        if request.previous_response_id is None:
            return []
        stored = self.store.get(request.previous_response_id)
        if stored is None:
            raise OpenAIError(404, f"Previous response with id '{request.previous_response_id}' not found "
                                   "(it was created with store: false, deleted, or evicted)",
                              param="previous_response_id", code="previous_response_not_found")
        return list(stored.conversation)

    def _finish(self, request: ResponsesRequest, conversation: list[dict[str, Any]], job: Job, choices: Choices,
                item_id: str) -> dict[str, Any]:
        item = choices.items[0]
        text = "".join(item.parts)
        status, reason = status_of(item.finish_reason)
        usage = choices.usage()
        response = response_object(
            request, job.id, job.created, self.serving.model_name, status,
            [output_message(item_id, text, "completed" if status == "completed" else "incomplete")],
            responses_usage(usage["prompt_tokens"], usage["completion_tokens"],
                            usage["prompt_tokens_details"]["cached_tokens"]), reason)
        if request.store and status != "failed":
            reply = {"role": "assistant", "content": text}
            self.store.put(job.id, StoredResponse(response, tuple(conversation) + (reply,)))
        return response

    async def _events(self, request: ResponsesRequest, conversation: list[dict[str, Any]], job: Job,
                      choices: Choices, deltas: AsyncIterator[tuple[int, RequestDelta]],
                      item_id: str) -> AsyncGenerator[str, None]:
        event = EventWriter()
        started = response_object(request, job.id, job.created or now(), self.serving.model_name, "in_progress",
                                  [], None)
        where = {"item_id": item_id, "output_index": 0, "content_index": 0}
        yield event("response.created", response=started)
        yield event("response.in_progress", response=started)
        yield event("response.output_item.added", output_index=0, item=output_message(item_id, "", "in_progress"))
        yield event("response.content_part.added", **where, part=output_text(""))
        try:
            async for index, delta in deltas:
                choices.add(index, delta)
                if delta.new_text:
                    yield event("response.output_text.delta", **where, delta=delta.new_text, logprobs=[])
        except Exception as exc:  # noqa: BLE001 - the status line is sent: the stream ends with an error event
            error = engine_error(exc)
            yield event("error", code=error.code, message=error.message, param=error.param)
            return
        response = self._finish(request, conversation, job, choices, item_id)
        text = "".join(choices.items[0].parts)
        yield event("response.output_text.done", **where, text=text, logprobs=[])
        yield event("response.content_part.done", **where, part=output_text(text))
        yield event("response.output_item.done", output_index=0, item=response["output"][0])
        kind = {"completed": "response.completed", "incomplete": "response.incomplete"}.get(
            response["status"], "response.failed")
        yield event(kind, response=response)
