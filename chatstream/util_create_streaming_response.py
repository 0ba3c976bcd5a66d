"""The original ChatStream 0.3.0's module path `chatstream.util_create_streaming_response`, kept so code written for it imports unchanged.

`create_streaming_response(request, text, streaming_finished_callback, headers=None, eos_token=..., finish_message=
"success")`: a short text streamed character by character in the /chat_stream format.
"""

from chatstream.facade.chat_stream_response import fixed_text_response

create_streaming_response = fixed_text_response

__all__ = ["create_streaming_response"]
