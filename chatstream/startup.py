"""Start-up phases: a line when each begins and ends, with its time, and plain lines in between.

Starting a server means importing the libraries (torch alone takes seconds, a minute on a busy
machine), converting the bundled model (once), loading the weights, building the CPU attention
kernel (once), preparing the engine (the KV cache, the CPU weight layout), warming it up, and then
serving: the phases `import`, `convert`, `load`, `compile`, `prepare`, `warmup` and `ready`. `StartupPhase` reports one phase through the `chatstream.startup`
logger, so every line goes wherever the process logs (a terminal, a file, JSON):

    [convert] converting SmolLM2-135M-Instruct.Q4_1.gguf into a HuggingFace directory (one-time)
    [convert] still running (3 s)
    [convert] done in 27.9 s

While a phase runs in the foreground it says that it is still running every `PROGRESS_INTERVAL_SEC`
seconds, so a log never has a silent minute; a phase that runs in the background (the kernel build
while the weights load) stays quiet until something waits for it (`show_progress`). Each record
carries the extra fields `phase`, `event` (start / progress / done / failed / ready) and `seconds`,
which the JSON log format writes as keys.

Torch-free and free of imports from any floor: the engine, the facade and the server all use it.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from types import TracebackType

PHASES = ("import", "convert", "load", "compile", "prepare", "warmup", "ready")
PROGRESS_INTERVAL_SEC = 3.0
LOGGER_NAME = "chatstream.startup"

logger = logging.getLogger(LOGGER_NAME)


def stderr_is_terminal() -> bool:
    """Whether progress bars may be drawn (stderr is an interactive terminal, not a log file)."""
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def _format_seconds(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 100 else f"{seconds:.0f} s"


class StartupPhase:
    """One start-up phase, used as a context manager around the work.

    `action` says what the phase does ("loading the weights of X"). `progress`: say every `interval`
    seconds that it is still running (off for a phase that runs in the background, or one that draws
    its own progress bar). `expected`: how long it took last time, shown with the progress lines.
    """

    def __init__(self, phase: str, action: str, *, progress: bool = True, expected: float | None = None,
                 interval: float = PROGRESS_INTERVAL_SEC, log: logging.Logger | None = None) -> None:
        if phase not in PHASES:
            raise ValueError(f"unknown start-up phase {phase!r}; known: {PHASES}")
        self.phase = phase
        self.action = action
        self.expected = expected
        self.interval = interval
        self.log = log or logger
        self.seconds: float | None = None  # the phase's duration, once it ended
        self._progress = progress
        self._t0 = 0.0
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> StartupPhase:
        self._t0 = time.perf_counter()
        self._emit(logging.INFO, "start", self.action)
        if self._progress:
            self.show_progress()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        ticker = self._ticker
        if ticker is not None and ticker is not threading.current_thread():
            ticker.join()
        self.seconds = self.elapsed
        if exc is None:
            self._emit(logging.INFO, "done", f"done in {_format_seconds(self.seconds)}", seconds=self.seconds)
        else:
            self._emit(logging.WARNING, "failed", f"failed after {_format_seconds(self.seconds)}: "
                       f"{type(exc).__name__}: {exc}", seconds=self.seconds)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._t0

    def show_progress(self, note: str | None = None) -> None:
        """From now on say every `interval` seconds that the phase is still running (idempotent).
        `note` is logged once first, e.g. why the caller now waits for a background phase."""
        if note:
            self._emit(logging.INFO, "progress", note, seconds=self.elapsed)
        with self._lock:
            if self._ticker is not None or self._stop.is_set():
                return
            self._ticker = threading.Thread(target=self._tick, name=f"chatstream-startup-{self.phase}", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            elapsed = self.elapsed
            of = f" of about {_format_seconds(self.expected)}" if self.expected else ""
            self._emit(logging.INFO, "progress", f"still running ({elapsed:.0f} s{of})", seconds=elapsed)

    def _emit(self, level: int, event: str, message: str, seconds: float | None = None) -> None:
        extra = {"phase": self.phase, "event": event}
        if seconds is not None:
            extra["seconds"] = round(seconds, 3)
        self.log.log(level, "[%s] %s", self.phase, message, extra=extra)


def log_ready(message: str, seconds: float) -> None:
    """The last start-up line: the server serves, `seconds` after the process started."""
    logger.info("[ready] %s (%s after start)", message, _format_seconds(seconds),
                extra={"phase": "ready", "event": "ready", "seconds": round(seconds, 3)})
