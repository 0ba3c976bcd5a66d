"""The OpenAI API's parts, one concept per module (the routes are `chatstream.http.openai_routes`).

wire (the error type, base models, the unknown-field rule), messages (chat history as OpenAI sends
it, tool calls included), structured (response_format and vLLM's structured_outputs as a grammar),
tools and tool_parsers (tool calling), token_texts and logprobs_format (log-probs as OpenAI shows
them), choices (answers as they grow), jobs (slot, engine requests, answer or stream),
route_support (key, body, OpenAI-shaped HTTP errors), side_routes (/tokenize, /detokenize,
/version, /v1/models/{id}), and the Responses API (responses_api, response_store,
responses_serving, responses_routes).
"""
