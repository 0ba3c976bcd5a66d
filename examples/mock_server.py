"""A chat server that answers with the Generator Mock instead of a model.

No model is loaded, so it starts instantly: handy while developing a client or the server around
ChatStream. The "echo" mock streams the user's own input back, word by word. Run it with
`python mock_server.py` (serves http://localhost:9999).
"""

from fastapi import FastAPI, Request
from fastsession import FastSessionMiddleware, MemoryStore

from chatstream import ChatStream, ChatPromptTogetherRedPajamaINCITEChat as ChatPrompt

chat_stream = ChatStream(
    use_mock_response=True,  # model and tokenizer are not needed
    mock_params={"type": "echo", "initial_wait_sec": 0, "time_per_token_sec": 0.05},
    chat_prompt_clazz=ChatPrompt,
)

app = FastAPI()

app.add_middleware(FastSessionMiddleware,
                   secret_key="your-session-secret-key",
                   store=MemoryStore(),
                   http_only=True,
                   secure=True,  # use False for local HTTP development in a browser
                   )


@app.post("/chat_stream")
async def stream_api(request: Request):
    response = await chat_stream.handle_chat_stream_request(request)
    return response


@app.on_event("startup")
async def startup():
    await chat_stream.start_queue_worker()


def main():
    import uvicorn

    uvicorn.run(app, host='localhost', port=9999)


if __name__ == "__main__":
    main()
