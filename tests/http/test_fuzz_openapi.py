"""An OpenAPI fuzzer (schemathesis) against a live server: every operation of /openapi.json gets
schema-conforming and schema-violating requests; none may be answered 5xx or hang.

Bounded: a fixed number of examples per operation and mode (`EXAMPLES`), a 30 s timeout per
request, a short context so that generations are short. The server is the real `create_app`
(every middleware) over a tiny random model, with an API key, so the fuzzer also sends requests
without it."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tiny_server import tiny_server

pytestmark = pytest.mark.slow
KEY = "sk-fuzz"
EXAMPLES = 20
REQUEST_TIMEOUT_SEC = 30


@pytest.fixture(scope="module")
def server(tiny_model_factory):
    with tiny_server(tiny_model_factory, api_key=KEY,
                     chat_stream_options={"max_model_len": 96, "max_new_tokens": 8}) as (server, app):
        yield server, app


def test_no_operation_answers_5xx_or_hangs(server):
    live, app = server
    schema = schemathesis.openapi.from_dict(httpx.get(live.url + "/openapi.json",
                                                      headers={"Authorization": f"Bearer {KEY}"}).json())
    failures: list[str] = []
    num_calls = 0
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 18
    for operation in operations:
        for mode, headers in ((GenerationMode.POSITIVE, {"Authorization": f"Bearer {KEY}"}),
                              (GenerationMode.NEGATIVE, {"Authorization": f"Bearer {KEY}"}),
                              (GenerationMode.POSITIVE, {})):

            @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def call(case) -> None:
                nonlocal num_calls
                num_calls += 1
                try:
                    response = case.call(base_url=live.url, headers=headers, timeout=REQUEST_TIMEOUT_SEC)
                except Exception as exc:  # noqa: BLE001 - a hang or a dropped connection is a failure
                    failures.append(f"{operation.label} [{mode.value}]: {type(exc).__name__}: {exc}")
                    return
                if response.status_code >= 500:
                    failures.append(f"{operation.label} [{mode.value}]: {response.status_code} "
                                    f"{response.text[:200]!r} for {case.body!r:.200}")

            try:
                call()
            except Unsatisfiable:
                pass  # nothing to make invalid: a GET with no parameters has no negative cases
    assert num_calls >= len(operations) * 2
    assert not failures, "\n".join(failures[:20])
    health = httpx.get(live.url + "/health")
    assert health.status_code == 200 and health.json()["status"] == "ready"
    chat_stream = app.state.server.chat_stream
    assert chat_stream.engine.is_running and chat_stream.admission.num_running == 0
