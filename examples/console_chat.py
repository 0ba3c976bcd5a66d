"""Chat with a model on the console: type a message after "YOU: ", "exit" quits.

One conversation, no server, no queue: a quick way to try a model and its ChatPrompt.
"""

import asyncio

import torch
from transformers import AutoTokenizer, AutoModelForCausalLM

from chatstream import ChatStream, ChatPromptTogetherRedPajamaINCITEChat as ChatPrompt

model_path = "togethercomputer/RedPajama-INCITE-Chat-3B-v1"
device = "cpu"  # "cuda" or "cpu"

tokenizer = AutoTokenizer.from_pretrained(model_path)
model = AutoModelForCausalLM.from_pretrained(model_path, torch_dtype=torch.float32)  # torch.float16 on "cuda"
model.to(device)

chat_stream = ChatStream(
    model=model,
    tokenizer=tokenizer,
    device=device,
    chat_prompt_clazz=ChatPrompt,
)


async def main():
    while True:
        user_input = input("YOU: ")
        if user_input == "exit":
            break

        async for response_text, updated_text, pos in chat_stream.handle_console_input(user_input):
            if pos == "begin":
                print("AI : ", end="")
                print(updated_text, end="", flush=True)
            elif pos == "mid":
                print(updated_text, end="", flush=True)
            elif pos == "end":
                print()


if __name__ == "__main__":
    asyncio.run(main())
