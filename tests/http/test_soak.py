"""The disconnect soak, short: a few hundred mixed requests, 30% abandoned by their clients at a random
point; at idle nothing is held (slots, waiting places, engine requests, KV blocks), the engine is
alive and gives the same greedy reply as before. The full size is
`chatstream bench soak --requests 3000` (README, "Reliability and security")."""

from __future__ import annotations

import pytest

from chatstream.bench.soak import run_soak
from tiny_server import tiny_app

pytestmark = pytest.mark.slow


def test_a_short_soak_leaks_nothing(tiny_model_factory):
    app = tiny_app(tiny_model_factory, chat_stream_options={
        "num_of_concurrent_executions": 4, "max_queue_size": 64, "max_new_tokens": 16, "temperature": 0.8,
        "num_kv_blocks": 96})
    report = run_soak(app, num_requests=300, disconnect_fraction=0.3, concurrency=12, seed=7)
    print(f"soak: {report.requests} requests, {report.disconnects} disconnects, statuses {report.statuses}, "
          f"RSS {report.rss_before_mib:.0f} -> {report.rss_after_mib:.0f} MiB, {report.seconds:.0f} s")
    assert report.requests == 300 and report.disconnects >= 60
    assert report.statuses.get("left", 0) >= 60 and report.statuses.get("200", 0) >= 100
    assert report.idle == {"admission_running": 0, "admission_waiting": 0, "engine_running": 0,
                           "engine_waiting": 0, "kv_blocks_in_use": 0}
    assert report.engine_alive and report.same_greedy_reply
    assert not report.failures, report.failures
