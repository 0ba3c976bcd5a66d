"""The load-time progress bar.

Owns: timing one slow call (typically loading model weights), remembering how long it took per name in
`<cache dir>/loadtime/<name>.json` (`{"total_time": seconds}`), and showing progress against that memory the next
time the same name is loaded. Loading weights that are already on disk gives no feedback of its own, so the first run
shows the elapsed time while it records, and later runs show a bar with a percentage and an ETA.

Usage: `model = LoadTime(name=model_path, fn=lambda: AutoModelForCausalLM.from_pretrained(model_path))()`.

Unlike the original, every name is recorded (not only HuggingFace-cached ones), exceptions from `fn` propagate
(nothing is stored then), and `dirname` names the folder under the cache dir. This module must stay free of torch.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from chatstream.cache_dir import cache_dir


BAR_CELLS = 20
DEFAULT_INTERVAL_SEC = 0.5
RECORDING_NOTE = "(recording load time)"
_WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack"}

logger = logging.getLogger(__name__)





def safe_file_stem(name: str) -> str:
    """A file name for `name`: path separators and other characters unsafe in file names become "_"."""
    stem = re.sub(r"[^\w.\-]", "_", name).strip(".")
    return stem or "_"


def _format_interval(seconds: float) -> str:
    return tqdm.format_interval(max(0.0, seconds))  # mm:ss, or h:mm:ss from one hour on


def _in_hf_cache(name: str) -> bool:
    """Whether the weights of `name` are already on disk (local paths always are), so no download will happen."""
    if not name or os.path.isdir(name):
        return True
    try:
        from huggingface_hub import constants
    except ImportError:  # no hub client: nothing could be downloaded either
        return True
    snapshots = Path(constants.HF_HUB_CACHE) / ("models--" + name.replace("/", "--")) / "snapshots"
    # Weight files, not just the folder: a caller that read the config first has already created the folder.
    return any(p.suffix in _WEIGHT_SUFFIXES for p in snapshots.glob("*/*"))


class _Display:
    """Shows progress while the caller runs the timed call.

    The first frame is drawn by the caller before the thread starts, and the final frame after it has been joined,
    so the two threads never draw at the same time.
    """

    def __init__(
        self, description: str, expected: float | None, fn_print: Callable[[str], Any] | None, interval: float,
        bar: bool = True,
    ) -> None:
        self.description = description
        self.expected = expected
        self.fn_print = fn_print
        self.interval = interval
        self.bar = bar  # False: the times only, no bar and no percentage
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chatstream-loadtime", daemon=True)
        self._bar: tqdm | None = None
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.perf_counter()
        if self.fn_print is None:
            if self.bar:
                self._bar = self._open_bar()
            else:
                self.fn_print = self._write_line
        self._draw(0.0)
        self._thread.start()

    def stop(self, elapsed: float, ok: bool) -> None:
        self._stop.set()
        self._thread.join()
        self._draw(elapsed, final=True, ok=ok)
        if self._bar is not None:
            self._bar.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._draw(time.perf_counter() - self._t0)
            except Exception:  # the display is cosmetic: a broken fn_print must not break the load it watches
                logger.warning("Load-time display stopped after an error", exc_info=True)
                return

    def _write_line(self, line: str) -> None:
        # The plain-text display on stderr: each frame overwrites the line; the final one ends it.
        final = self._stop.is_set()
        sys.stderr.write("\r" + line + ("\n" if final else ""))
        sys.stderr.flush()

    def _open_bar(self) -> tqdm:
        common = {"desc": self.description, "file": sys.stderr, "leave": True, "smoothing": 0}
        if self.expected is None:
            return tqdm(total=None, bar_format="{desc} ... {elapsed} " + RECORDING_NOTE, **common)
        # smoothing=0 makes tqdm take the rate as n / elapsed; with n in seconds that rate is 1 and the ETA is simply
        # the stored time minus the elapsed time.
        bar_format = "{desc} ... {percentage:3.0f}%|{bar:" + str(BAR_CELLS) + "}| {elapsed}<{remaining}"
        return tqdm(total=self.expected, bar_format=bar_format, **common)

    def _draw(self, elapsed: float, final: bool = False, ok: bool = False) -> None:
        if self._bar is not None:
            self._draw_bar(elapsed, final, ok)
        else:
            assert self.fn_print is not None
            self.fn_print(self._line(elapsed, final, ok))

    def _draw_bar(self, elapsed: float, final: bool, ok: bool) -> None:
        bar = self._bar
        assert bar is not None
        if final and not ok:
            bar.bar_format = "{desc} ... {elapsed} (failed)"
        elif self.expected is None:
            if final:
                bar.bar_format = "{desc} ... {elapsed} (load time recorded)"
        else:
            # Capped at 100 %: past the stored time the bar stays full and only the elapsed time keeps counting.
            bar.n = self.expected if final else min(elapsed, self.expected)
        bar.refresh()

    def _line(self, elapsed: float, final: bool, ok: bool) -> str:
        prefix = f"{self.description} ... {_format_interval(elapsed)}"
        if final and not ok:
            return f"{prefix} (failed)"
        if self.expected is None:
            return f"{prefix} (load time recorded)" if final else f"{prefix} {RECORDING_NOTE}"
        if not self.bar:
            return f"{prefix}/{_format_interval(self.expected)}"
        fraction = 1.0 if final else min(elapsed / self.expected, 1.0)
        filled = math.floor(fraction * BAR_CELLS)
        cells = "█" * filled + " " * (BAR_CELLS - filled)
        return f"{prefix}/{_format_interval(self.expected)} [{cells}] ({math.floor(fraction * 100):3d}%)"


class LoadTime:
    """Runs `fn` once with a load-time display and returns its result.

    `name` keys the stored time; `message` replaces the default description `Loading "<name>"`; `pbar=False` shows
    the times without the bar and the percentage (as the original did); `dirname` is the folder under the cache dir; `hf=True` marks `name` as a
    HuggingFace hub id: while it is not in the local hub cache, the run shows nothing (HF's download bars need the
    terminal) and records nothing (the time would include the download). `fn_print` receives plain text lines
    instead of the bar. `interval` is the refresh period in seconds.
    """

    def __init__(
        self,
        name: str = "",
        message: str | None = None,
        pbar: bool = True,
        dirname: str = "loadtime",
        hf: bool = False,
        fn: Callable[[], Any] | None = None,
        fn_print: Callable[[str], Any] | None = None,
        *,
        interval: float = DEFAULT_INTERVAL_SEC,
    ) -> None:
        if fn is None:
            raise TypeError("LoadTime needs fn=, the call to time (e.g. fn=lambda: load_the_model())")
        if not callable(fn):
            raise TypeError(f"LoadTime fn must be callable, got {type(fn).__name__}")
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        self.name = name
        self.message = message
        self.pbar = pbar
        self.dirname = dirname
        self.hf = hf
        self.fn = fn
        self.fn_print = fn_print
        self.interval = interval

    @property
    def description(self) -> str:
        return self.message if self.message is not None else f'Loading "{self.name}"'

    @property
    def stored_path(self) -> Path:
        # Resolved on each use, so a cache dir redirected after construction (tests, users) is honoured.
        return cache_dir() / self.dirname / f"{safe_file_stem(self.name)}.json"

    def stored_time(self) -> float | None:
        """The recorded duration in seconds, or None when there is none (or it is unreadable)."""
        try:
            value = json.loads(self.stored_path.read_text(encoding="utf-8"))["total_time"]
        except (OSError, ValueError, TypeError, KeyError):
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            return None
        return float(value)

    def clear_stored_data(self) -> None:
        """Forget the recorded duration; the next run records again."""
        self.stored_path.unlink(missing_ok=True)

    def __call__(self) -> Any:
        return self.start()

    def start(self) -> Any:
        """Run `fn` in this thread with the display running beside it; return its result, or re-raise its error."""
        downloading = self.hf and not _in_hf_cache(self.name)
        display = None
        if not downloading:
            display = _Display(self.description, self.stored_time(), self.fn_print, self.interval, bar=self.pbar)
        t0 = time.perf_counter()
        if display is not None:
            display.start()
        ok = False
        try:
            result = self.fn()
            ok = True
        finally:
            elapsed = time.perf_counter() - t0
            if display is not None:
                display.stop(elapsed, ok)
        if not downloading:
            self._store(elapsed)
        return result

    def _store(self, seconds: float) -> None:
        # Written to a temp file and renamed into place, so a crash or a concurrent run never leaves half a file. A
        # cache that cannot be written only costs the next run its bar; it must not fail the load.
        path = self.stored_path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".tmp", dir=path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump({"total_time": seconds}, f)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            logger.warning("Could not store the load time of %r in %s: %s", self.name, path, exc)
