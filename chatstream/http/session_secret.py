"""The key that signs session cookies, and where `chatstream serve` keeps it.

A session outlives the process only if the next process accepts its cookie, so with a store that
keeps sessions (SQLite, Redis) the key must stay the same across restarts: given with
`--session-secret` (or `CHATSTREAM_SESSION_SECRET`, read when the server starts), or else made
once and kept in the user's data directory (`session-secret`, readable by its owner only). Several
servers sharing a Redis store must be given the same key. With the `memory` store sessions end
with the process anyway, and a random key is used.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from chatstream.conversations import parse_store_url
from chatstream.conversations.options import data_dir

SECRET_ENV = "CHATSTREAM_SESSION_SECRET"
SECRET_FILE = "session-secret"


def session_secret(given: str | None, store_url: str) -> str:
    """The signing key: `given`, else $CHATSTREAM_SESSION_SECRET, else random for a memory store,
    else the one kept in the data directory (made on first use)."""
    if given:
        return given
    from_env = os.environ.get(SECRET_ENV)
    if from_env:
        return from_env
    if parse_store_url(store_url).kind == "memory":
        return secrets.token_urlsafe(32)
    return kept_secret(data_dir() / SECRET_FILE)


def kept_secret(path: Path) -> str:
    """The key in `path`, made (owner-only) if the file does not exist."""
    try:
        text = path.read_text(encoding="ascii").strip()
        if text:
            return text
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another server made it just now
        return path.read_text(encoding="ascii").strip()
    try:
        os.write(fd, secret.encode("ascii"))
    finally:
        os.close(fd)
    return secret
