"""Floor 2: the APIs people call over the engine: `ChatStream` (the original ChatStream API:
sessions, admission, the /chat_stream protocol, its default routes, console chat, the generator
mock) and `LLM` (offline batch generation).

Arrows: the facade imports the engine, the Transformer Mock plug-in (`chatstream.mock`),
`chatstream.chat_prompt` and what the package root shares; never `chatstream.http`. Nothing is
imported here, so `chatstream.facade.llm` does not pull in Starlette and the mock mode no torch.
"""
