"""The quick-start server with a load-time progress bar (`LoadTime`) around the model load.

Run it with `python loadtime_server.py` (serves http://localhost:9999) or from outside with
`uvicorn loadtime_server:app --host 0.0.0.0 --port 3000`. POST `{"user_input": "Hello",
"regenerate": false}` to `/chat_stream`; the reply streams back as cumulative texts, each ending
with `<::EOS::>`.
"""

import torch
from fastapi import FastAPI, Request
from fastsession import FastSessionMiddleware, MemoryStore
from transformers import AutoTokenizer, AutoModelForCausalLM

from chatstream import ChatStream, ChatPromptTogetherRedPajamaINCITEChat as ChatPrompt, LoadTime

model_path = "togethercomputer/RedPajama-INCITE-Chat-3B-v1"
device = "cpu"  # "cuda" or "cpu"

# The first run measures how long the load takes; later runs show a progress bar against that time.
# Load the tokenizer after the model.
model = LoadTime(name=model_path,
                 fn=lambda: AutoModelForCausalLM.from_pretrained(model_path, torch_dtype=torch.float32))()
tokenizer = AutoTokenizer.from_pretrained(model_path)
model.to(device)

chat_stream = ChatStream(
    num_of_concurrent_executions=2,
    max_queue_size=5,
    model=model,
    tokenizer=tokenizer,
    device=device,
    chat_prompt_clazz=ChatPrompt,
)

app = FastAPI()

# The conversation of each browser is kept in its HTTP session.
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
