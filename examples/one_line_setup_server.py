"""The recommended setup: sessions, every default API and the bundled chat page in two lines.

`append_middlewares` adds the session middleware; `append_apis` registers `/chat_stream`,
`/clear_context`, `/get_prompt`, the generation-parameter and feedback APIs, `/get_load`,
`/get_resource_usage`, and the web UI at `/` (with `/chatstream.js`). Run it with
`python one_line_setup_server.py` and open http://localhost:9999 in a browser.
"""

from contextlib import asynccontextmanager

import torch
from fastapi import FastAPI
from transformers import AutoTokenizer, AutoModelForCausalLM

from chatstream import ChatStream, ChatPromptTogetherRedPajamaINCITEChat as ChatPrompt

model_path = "togethercomputer/RedPajama-INCITE-Chat-3B-v1"
device = "cpu"  # "cuda" or "cpu"

tokenizer = AutoTokenizer.from_pretrained(model_path)
model = AutoModelForCausalLM.from_pretrained(model_path, torch_dtype=torch.float32)  # torch.float16 on "cuda"
model.to(device)

chat_stream = ChatStream(
    num_of_concurrent_executions=2,
    max_queue_size=5,
    model=model,
    tokenizer=tokenizer,
    device=device,
    chat_prompt_clazz=ChatPrompt,
)


@asynccontextmanager
async def lifespan(app: FastAPI):
    await chat_stream.start_queue_worker()
    yield
    chat_stream.shutdown()  # stops the engine thread


app = FastAPI(lifespan=lifespan)

chat_stream.append_middlewares(app)
chat_stream.append_apis(app, {"all": True, "web_ui_params": {"welcomeMessage": "Hello! Ask me anything."}})


def main():
    import uvicorn

    uvicorn.run(app, host='localhost', port=9999)


if __name__ == "__main__":
    main()
