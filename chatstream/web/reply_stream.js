// reply_stream.js - one /chat_stream request, followed to its end.
//
// The wire format is the original's: every chunk is the whole reply so far followed by
// "<::EOS::>", and chunks may arrive merged or split across reads, so the decoded text is split on
// that token and the last complete segment is the reply so far. A stream that ends in the middle
// of a segment, or whose connection breaks, was dropped. The reply's message id comes in the
// X-ChatStream-Last-Generated-Message-Id header, before the first chunk.

import { errorFromResponse } from "./api.js";

export const EOS = "<::EOS::>";
// A reply the server could not finish ends with one more segment: the text so far, this marker,
// and the reason (the engine failed, the server shut down).
export const ERROR_MARKER = "<::ERROR::>";
export const MESSAGE_ID_HEADER = "X-ChatStream-Last-Generated-Message-Id";

/** The connection broke after the server accepted the turn (it keeps what it generated). */
export class DroppedError extends Error {
  /** reason: what the server said when it ended the reply with an error (null: the connection broke). */
  constructor(messageId, text, reason = null) {
    super(reason || "the reply stream was cut off");
    this.name = "DroppedError";
    this.messageId = messageId;
    this.text = text;
    this.reason = reason;
  }
}

/**
 * POST `body` and follow the reply: `onStart(messageId)` once the server accepted the turn,
 * `onText(text)` for every new reply-so-far. Resolves with {messageId, text}. Rejects with an
 * ApiError when the turn was refused or never reached the server (status 0), a DroppedError when
 * the stream broke after it was accepted, or an AbortError when `signal` aborted it.
 */
export async function followReply(api, body, { signal, onStart, onText }) {
  const resp = await api.streamReply(body, signal);
  const type = (resp.headers.get("Content-Type") || "").toLowerCase();
  if (!resp.ok || type.includes("application/json")) throw await errorFromResponse(resp);
  const messageId = resp.headers.get(MESSAGE_ID_HEADER);
  onStart(messageId);

  let text = "";
  let pending = "";
  let failure = null;
  const consume = (chunk) => {
    const parts = (pending + chunk).split(EOS);
    pending = parts.pop(); // an incomplete segment waits for the rest
    let last = parts.length > 0 ? parts[parts.length - 1] : null;
    if (last !== null && last.includes(ERROR_MARKER)) {
      const at = last.indexOf(ERROR_MARKER);
      failure = last.slice(at + ERROR_MARKER.length);
      last = last.slice(0, at);
    }
    if (last !== null && last !== text) {
      text = last;
      onText(text);
    }
  };
  const decoder = new TextDecoder();
  const reader = resp.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      consume(decoder.decode(value, { stream: true }));
    }
  } catch (e) {
    if (signal && signal.aborted) throw new DOMException("stopped", "AbortError");
    throw new DroppedError(messageId, text);
  }
  consume(decoder.decode());
  if (failure !== null) throw new DroppedError(messageId, text, failure);
  if (pending !== "") throw new DroppedError(messageId, text);
  return { messageId, text };
}
