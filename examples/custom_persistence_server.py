"""Conversation history in a database, keyed by a header: a custom request handler.

The original ChatStream's extension point for persistence is `AbstractRequestHandler`. This handler keeps each
conversation in SQLite under the key a front server (or any client) sends in the `X-Conversation-Id` header, so a
conversation survives restarts and needs no cookie. It is written to the original's contract: `process_request`
loads the ChatPrompt (`from_dict`, or a new one with `create_chat_prompt()` + `build_initial_prompt`), opens the
turn, streams `self.generate(...)`, and its finish callback saves the conversation (`to_dict`) and then awaits
`streaming_finished_callback(request, message)`.

Run it with `python custom_persistence_server.py` (serves http://localhost:9999, keeps chat_history.sqlite3 in the
working directory; set CHAT_HISTORY_DB to choose the file), then:

    curl -N localhost:9999/chat_stream -H 'X-Conversation-Id: alice-1' -d '{"user_input": "Hello"}'

It answers with the Generator Mock so it starts instantly; give `ChatStream` a `model=` to serve a real one.
"""

import asyncio
import json
import os
import sqlite3
import uuid

from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, StreamingResponse

from chatstream import AbstractRequestHandler, ChatPromptTogetherRedPajamaINCITEChat as ChatPrompt, ChatStream

CONVERSATION_HEADER = "X-Conversation-Id"


class ConversationStore:
    """One table: conversation key -> the ChatPrompt's `to_dict()` as JSON. sqlite3 blocks, so the handler calls
    it in a worker thread; each call opens its own connection."""

    def __init__(self, path: str) -> None:
        self.path = path
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS conversations (key TEXT PRIMARY KEY, record TEXT NOT NULL)")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10)

    def load(self, key: str) -> dict | None:
        with self._connect() as db:
            row = db.execute("SELECT record FROM conversations WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def save(self, key: str, record: dict) -> None:
        with self._connect() as db:
            db.execute("INSERT INTO conversations (key, record) VALUES (?, ?) "
                       "ON CONFLICT(key) DO UPDATE SET record = excluded.record", (key, json.dumps(record)))


class DatabaseRequestHandler(AbstractRequestHandler):
    def __init__(self, store: ConversationStore) -> None:
        super().__init__()
        self.store = store

    def get_request_handler_type(self) -> str:
        return "database"

    def conversation_key(self, request: Request):
        # Requests of one conversation are served one after the other.
        return request.headers.get(CONVERSATION_HEADER)

    async def process_request(self, request: Request, request_body, streaming_finished_callback):
        key = request.headers.get(CONVERSATION_HEADER)
        if not key:
            await streaming_finished_callback(request, "unknown_error_occurred,while reading the conversation key")
            return JSONResponse({"error": "invalid_request", "detail": f"the {CONVERSATION_HEADER} header is required",
                                 "field": CONVERSATION_HEADER}, status_code=400)
        try:
            record = await asyncio.to_thread(self.store.load, key)
            if record is None:
                chat_prompt = self.create_chat_prompt()
                chat_prompt.build_initial_prompt(chat_prompt)
            else:
                chat_prompt = self.chat_prompt_clazz.from_dict(record)
                chat_prompt.set_tokenizer(self.tokenizer)

            data = json.loads(request_body)
            if self.get_bool_from_dict(data, "regenerate"):
                if chat_prompt.is_empty():
                    return await self.return_internal_server_error_response(
                        request, streaming_finished_callback, "regenerate requested even though the prompt is empty")
                chat_prompt.clear_last_responder_message()
            else:
                chat_prompt.add_requester_msg(data.get("user_input"))
                chat_prompt.add_responder_msg(None)

            async def finished(message):
                if message in ("success", "client_disconnected_while_streaming"):  # keep a partial reply too
                    await asyncio.to_thread(self.store.save, key, chat_prompt.to_dict())
                await streaming_finished_callback(request, message)

            message_id = str(uuid.uuid4())
            chunks = self.generate(chat_prompt, finished, request, None, message_id=message_id)
            return StreamingResponse(chunks, media_type="text/plain",
                                     headers={"X-ChatStream-Last-Generated-Message-Id": message_id})
        except Exception as exc:
            self.logger.warning(self.eloc.to_str({"en": f"conversation {key}: {exc}", "ja": f"会話 {key}: {exc}"}))
            return await self.return_internal_server_error_response(request, streaming_finished_callback,
                                                                    "database request")


chat_stream = ChatStream(
    use_mock_response=True,  # or model=..., tokenizer=..., device=...
    mock_params={"type": "echo", "time_per_token_sec": 0.01},
    chat_prompt_clazz=ChatPrompt,
    request_handler=DatabaseRequestHandler(ConversationStore(os.environ.get("CHAT_HISTORY_DB",
                                                                            "chat_history.sqlite3"))),
)

app = FastAPI()


@app.post("/chat_stream")
async def stream_api(request: Request):
    return await chat_stream.handle_chat_stream_request(request)


def main():
    import uvicorn

    uvicorn.run(app, host="localhost", port=9999)


if __name__ == "__main__":
    main()
