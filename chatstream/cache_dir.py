"""Where ChatStream keeps files between runs (converted models, load timings, recordings).

Torch-free on purpose: the load-time bar and the mocks need it without importing a model stack.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_DIR_ENV = "CHATSTREAM_CACHE_DIR"


def cache_dir() -> Path:
    """$CHATSTREAM_CACHE_DIR if set, else the platform's user cache dir + /chatstream.

    Read on every call so tests and users can redirect it at any time."""
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs  # only needed when no override is given

    return Path(platformdirs.user_cache_dir("chatstream", appauthor=False))
