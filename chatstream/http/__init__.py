"""Floor 3: the `chatstream serve` server: the FastAPI app, the OpenAI-compatible routes and their
serving logic, /health and /metrics, and the serving context the APIs share. The /chat_stream
APIs themselves, their sessions and access control belong to the facade, which this floor
registers on the app; nothing below this floor imports it."""
