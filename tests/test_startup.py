"""The start-up phases: a start line, plain progress lines while a phase runs, a done line with its
time, and the fields the JSON log format writes (phase, event, seconds)."""

from __future__ import annotations

import logging
import threading

import pytest

from chatstream.startup import LOGGER_NAME, PHASES, StartupPhase, log_ready


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.progress = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if getattr(record, "event", None) == "progress":
            self.progress.set()


@pytest.fixture
def records():
    handler = Records()
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def events(handler: Records) -> list[tuple[str, str]]:
    return [(r.phase, r.event) for r in handler.records]


def test_a_phase_says_when_it_starts_and_ends_with_its_time(records: Records) -> None:
    with StartupPhase("load", "loading the weights of tiny", progress=False) as phase:
        pass
    assert events(records) == [("load", "start"), ("load", "done")]
    start, done = records.records
    assert start.getMessage() == "[load] loading the weights of tiny"
    assert done.getMessage().startswith("[load] done in ") and done.seconds == round(phase.seconds, 3)


def test_a_running_phase_says_it_is_still_running(records: Records) -> None:
    with StartupPhase("convert", "converting a model", interval=0.01):
        assert records.progress.wait(30)  # the ticker thread speaks while the work goes on
    kinds = [event for _, event in events(records)]
    assert kinds[0] == "start" and kinds[-1] == "done" and set(kinds[1:-1]) == {"progress"}
    assert records.records[1].getMessage().startswith("[convert] still running (")


def test_a_background_phase_is_quiet_until_someone_waits_for_it(records: Records) -> None:
    phase = StartupPhase("compile", "building the kernel", progress=False, interval=0.01)
    with phase:
        assert not records.progress.wait(0.1)
        phase.show_progress("waiting for it")
        assert records.progress.wait(30)
    notes = [r.getMessage() for r in records.records if r.event == "progress"]
    assert notes[0] == "[compile] waiting for it"


def test_a_failing_phase_says_so_and_the_error_propagates(records: Records) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with StartupPhase("warmup", "warming up", progress=False):
            raise RuntimeError("boom")
    failed = records.records[-1]
    assert failed.event == "failed" and failed.levelno == logging.WARNING and "RuntimeError: boom" in failed.getMessage()


def test_ready_line_and_unknown_phases(records: Records) -> None:
    log_ready("serving tiny on http://127.0.0.1:1", 12.5)
    ready = records.records[-1]
    assert (ready.phase, ready.event, ready.seconds) == ("ready", "ready", 12.5)
    assert ready.getMessage() == "[ready] serving tiny on http://127.0.0.1:1 (12.5 s after start)"
    assert PHASES[-1] == "ready"
    with pytest.raises(ValueError, match="unknown start-up phase"):
        StartupPhase("coffee", "brewing")
