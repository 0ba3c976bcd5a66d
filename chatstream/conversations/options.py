"""The store's options and where the embedded default keeps its file.

Options are frozen once a store is opened. `default_store_url()` is what `chatstream serve` uses
when no `--conversation-store` is given: an SQLite file under the user's data directory
(``$CHATSTREAM_DATA_DIR`` when set, read at call time, else platformdirs' user data dir).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

DATA_DIR_ENV = "CHATSTREAM_DATA_DIR"
DEFAULT_FILE_NAME = "conversations.sqlite3"
SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True)
class StoreOptions:
    """
    conversation_ttl_s: a conversation not updated for this long is deleted (None: kept forever;
        the CLI's ``--conversation-ttl`` is in days, see `days`).
    session_ttl_s: a session record not seen for this long expires (None: kept forever).
    reply_lease_s: a streaming reply whose writer has not written for this long reads as
        `interrupted` (the writer crashed or was killed). Writers call `update_reply` at least
        every `heartbeat_s`.
    """

    conversation_ttl_s: float | None = None
    session_ttl_s: float | None = 14 * SECONDS_PER_DAY
    reply_lease_s: float = 15.0

    def __post_init__(self) -> None:
        for name in ("conversation_ttl_s", "session_ttl_s", "reply_lease_s"):
            value = getattr(self, name)
            if value is None and name != "reply_lease_s":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")

    @property
    def heartbeat_s(self) -> float:
        """How often a writer should at least refresh its open reply."""
        return self.reply_lease_s / 3


def days(value: float | None) -> float | None:
    """Days (the CLI's unit) to seconds; None stays None."""
    return None if value is None else value * SECONDS_PER_DAY


def data_dir() -> Path:
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("chatstream", appauthor=False))


def default_store_path() -> Path:
    return data_dir() / DEFAULT_FILE_NAME


def default_store_url() -> str:
    """``sqlite:///`` + the default file's absolute path (so four slashes on POSIX)."""
    return "sqlite:///" + default_store_path().absolute().as_posix()
