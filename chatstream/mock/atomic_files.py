"""Crash-safe file writes: a reader sees the whole new file or nothing, never half of one.

Owns the write-to-a-temp-name, fsync, rename pattern used for recordings. Temp names start with
"." and contain ".tmp-", so readers that list a directory can skip them by name.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

TEMP_MARKER = ".tmp-"


def temp_name(final: Path) -> Path:
    """A unique temp path next to `final` (same directory, so the rename is atomic)."""
    return final.with_name(f".{final.name}{TEMP_MARKER}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def is_temp_name(name: str) -> bool:
    return name.startswith(".") and TEMP_MARKER in name


def _fsync_path(path: Path) -> None:
    # Directories are fsynced so the rename itself is durable; some platforms cannot open a
    # directory for that, and there the rename is as durable as the OS makes it.
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves either the old file or the new one."""
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_path(path.parent)


def write_dir_atomic(path: Path, fill: Callable[[Path], None]) -> None:
    """Create directory `path` by letting `fill` write into a temp directory, then renaming it.

    `path` must not exist yet: a directory cannot atomically replace a non-empty one.
    """
    tmp = temp_name(path)
    tmp.mkdir()
    try:
        fill(tmp)
        for child in tmp.rglob("*"):
            if child.is_file():
                _fsync_path(child)
        _fsync_path(tmp)
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_path(path.parent)
