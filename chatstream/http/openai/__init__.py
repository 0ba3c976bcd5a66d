"""The OpenAI API's parts beyond plain chat and completions, one concept per module.

messages (chat history as OpenAI sends it, tool calls included), token_texts and logprobs_format
(log-probs as OpenAI shows them), structured (response_format and vLLM's structured_outputs as a
grammar), tools and tool_parsers (tool calling), choices (answers as they grow), side_routes
(/tokenize, /detokenize, /version, /v1/models/{id}), and the Responses API (responses_api,
response_store, responses_serving).
"""
