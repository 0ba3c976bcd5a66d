"""A request handler written the way the original ChatStream 0.3.0 wrote its own `SimpleSessionRequestHandler`.

Its shape follows the original's documented contract (the `AbstractRequestHandler` docstrings and the reference's
section 5.3), in this project's words: the conversation lives in `request.state.session`; a new one is made with
`create_chat_prompt()` and then `build_initial_prompt`; the body comes from `request_body` when given; a pass phrase
goes through `detect_special_command_for_role_promotion`; `regenerate` is read with `get_bool_from_dict`;
regenerating an empty conversation answers through `return_internal_server_error_response`; the reply is
`self.generate(...)` wrapped in a plain `StreamingResponse` with the message-id header; and an async finish callback
saves the session and then awaits `streaming_finished_callback(request, message)`. Log lines go through `self.eloc`.

It uses nothing of this package beyond that contract, so it is what a user migrating real code would bring.
"""

from __future__ import annotations

import json
import uuid

from starlette.requests import Request
from starlette.responses import StreamingResponse

from chatstream.request_handler.request_handler import AbstractRequestHandler


class OriginalStyleSessionHandler(AbstractRequestHandler):
    def __init__(self, session_attr_name: str = "session") -> None:
        super().__init__()
        self.session_attr = session_attr_name
        self.finish_messages: list[str] = []  # what the handler's own callback saw, for the tests

    def get_request_handler_type(self) -> str:
        return "http_session"

    async def process_request(self, request: Request, request_body, streaming_finished_callback):
        try:
            self.logger.debug(self.eloc.to_str({"en": "handling a request", "ja": "リクエストを処理します"}))
            if not hasattr(request.state, self.session_attr):
                raise RuntimeError("Session is not available: add FastSessionMiddleware")
            session_mgr = getattr(request.state, self.session_attr)
            session = session_mgr.get_session()

            if session.get("chat_prompt") is None:
                chat_prompt = self.create_chat_prompt()
                chat_prompt.build_initial_prompt(chat_prompt)
                session["chat_prompt"] = chat_prompt
                session_mgr.save_session()
            chat_prompt = session.get("chat_prompt")

            data = json.loads(request_body) if request_body is not None else await request.json()
            user_input = data.get("user_input", None)

            promoted = self.detect_special_command_for_role_promotion(request, user_input, streaming_finished_callback)
            if promoted is not None:
                return promoted

            if self.get_bool_from_dict(data, "regenerate"):
                if chat_prompt.is_empty():
                    return await self.return_internal_server_error_response(
                        request, streaming_finished_callback, "regenerate requested even though the prompt is empty")
                chat_prompt.clear_last_responder_message()
            else:
                chat_prompt.add_requester_msg(user_input)
                chat_prompt.add_responder_msg(None)

            async def chat_generation_finished_callback(message):
                self.finish_messages.append(message)
                if message in ("success", "client_disconnected_while_streaming"):
                    session_mgr.save_session()  # keep the (partial) reply
                await streaming_finished_callback(request, message)

            custom_generation_params = session.get("generation_params", None)
            message_id = str(uuid.uuid4())
            generator = self.generate(chat_prompt, chat_generation_finished_callback, request,
                                      custom_generation_params, message_id=message_id)
            response = StreamingResponse(generator, media_type="text/plain")
            response.headers["X-ChatStream-Last-Generated-Message-Id"] = message_id
            return response
        except Exception as e:
            self.logger.debug(self.eloc.to_str({"en": f"handler error {e}", "ja": f"ハンドラのエラー {e}"}))
            return await self.return_internal_server_error_response(request, streaming_finished_callback,
                                                                    "simple session request")
