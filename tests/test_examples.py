"""The documented examples in `examples/` run unchanged against this package, driven over real HTTP.

The examples keep the original documentation's model path, `togethercomputer/RedPajama-INCITE-Chat-3B-v1`, which
`from_pretrained` reads as a local directory when one of that name exists in the working directory. Nothing can be
downloaded in the tests, so they create that directory in a temporary working directory and fill it with the files
of the bundled real SmolLM2-135M-Instruct (the `smollm2_dir` fixture). The prompts are therefore in RedPajama's
format while the weights are SmolLM2's: the replies may read oddly, but they are real model output.

The servers run as `uvicorn <example>:app` subprocesses (the way the docs start them from outside), the console
example as `python console_chat.py` with its input on stdin; the mock server, which loads no model, runs in-process.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from live_server import LiveServer, session_client

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = REPO_ROOT / "examples"
DOCUMENTED_MODEL_PATH = "togethercomputer/RedPajama-INCITE-Chat-3B-v1"
FINISH_TOKEN = "<::EOS::>"
START_TIMEOUT_SEC = 180


# -- helpers --------------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _example_env(workdir: Path) -> dict[str, str]:
    """The environment of an example subprocess: examples/ and the repo importable, nothing downloaded, and the
    load-time records kept in the temporary directory instead of the user's cache."""
    env = dict(os.environ)
    paths = [str(EXAMPLES_DIR), str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["HF_HUB_OFFLINE"] = "1"
    env["CHATSTREAM_CACHE_DIR"] = str(workdir / "chatstream-cache")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ExampleServer:
    """`python -m uvicorn <module>:app` in `workdir`; its output goes to files, read with `stderr_text()`."""

    def __init__(self, module: str, workdir: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        logs = workdir / "logs"
        logs.mkdir(exist_ok=True)
        self.stdout_path = logs / f"{module}-{self.port}.out"
        self.stderr_path = logs / f"{module}-{self.port}.err"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", f"{module}:app", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=workdir, env=_example_env(workdir), stdin=subprocess.DEVNULL, stdout=out, stderr=err)

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def wait_until_serving(self) -> None:
        """Poll until the server answers any HTTP request (uvicorn listens only after the module has loaded the
        model and the startup hooks have run)."""
        deadline = time.monotonic() + START_TIMEOUT_SEC
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"the server exited with {self.proc.returncode}:\n{self.stderr_text()[-4000:]}")
            try:
                httpx.get(self.url + "/", timeout=2)
                return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not answer within {START_TIMEOUT_SEC} s:\n{self.stderr_text()[-4000:]}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(20)


@contextlib.contextmanager
def _serve(module: str, workdir: Path) -> Iterator[ExampleServer]:
    server = ExampleServer(module, workdir)
    try:
        server.wait_until_serving()
        yield server
    finally:
        server.stop()


def _stream_chat(client: httpx.Client, user_input: str) -> tuple[httpx.Headers, list[str], list[str]]:
    """POST /chat_stream and read the body as it streams: (headers, network chunks, complete segments)."""
    with client.stream("POST", "/chat_stream", json={"user_input": user_input, "regenerate": False}) as response:
        assert response.status_code == 200, response.read()
        chunks = [chunk for chunk in response.iter_text() if chunk]
        headers = response.headers
    text = "".join(chunks)
    pieces = text.split(FINISH_TOKEN)
    assert pieces[-1] == "", f"every segment must end with the finish token: {text[-80:]!r}"
    return headers, chunks, pieces[:-1]


def _check_real_model_reply(headers: httpx.Headers, segments: list[str]) -> str:
    assert headers["content-type"].startswith("text/plain")
    assert headers["x-chatstream-last-generated-message-id"]
    assert segments, "no complete segment arrived"
    final = segments[-1]
    assert final.strip(), "the reply is empty"
    for earlier in segments:  # each segment is the whole (stripped) reply so far
        assert final.startswith(earlier.rstrip()), (earlier, final)
    return final


# -- fixtures -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def example_workdir(tmp_path_factory: pytest.TempPathFactory, smollm2_dir: Path) -> Path:
    """A working directory holding `togethercomputer/RedPajama-INCITE-Chat-3B-v1/` = the SmolLM2 files."""
    workdir = tmp_path_factory.mktemp("examples")
    model_dir = workdir / DOCUMENTED_MODEL_PATH
    model_dir.mkdir(parents=True)
    for source in smollm2_dir.iterdir():
        if source.is_file():
            (model_dir / source.name).symlink_to(source.resolve())
    return workdir


def _load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the mock server (no model) ---------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:\\s*on_event is deprecated:DeprecationWarning")  # the documented startup hook
def test_mock_server_echoes_word_by_word():
    module = _load_example("mock_server")
    assert "torch" not in vars(module)
    with LiveServer(module.app) as server, session_client(server.url) as client:
        headers, chunks, segments = _stream_chat(client, "one two three four")
        assert headers["content-type"].startswith("text/plain")
        assert headers["x-chatstream-last-generated-message-id"]
        assert segments == ["one", "one two", "one two three", "one two three four"]
        assert len(chunks) > 1, "the reply arrived in one piece instead of streaming"
        # a second turn of the same session
        _, _, segments = _stream_chat(client, "again please")
        assert segments[-1] == "again please"


def test_custom_persistence_server_keeps_conversations_in_sqlite_by_header(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch):
    """The custom request handler example: history in SQLite under the X-Conversation-Id header, surviving a
    restart of the server (a second app built from the same file), one conversation per key."""
    import sqlite3

    database = tmp_path / "history.sqlite3"
    monkeypatch.setenv("CHAT_HISTORY_DB", str(database))

    def turn(client: httpx.Client, key: str, text: str, regenerate: bool = False) -> list[str]:
        response = client.post("/chat_stream", headers={"X-Conversation-Id": key},
                               json={"user_input": None if regenerate else text, "regenerate": regenerate})
        assert response.status_code == 200 and response.headers["x-chatstream-last-generated-message-id"]
        return [s for s in response.text.split(FINISH_TOKEN)[:-1]]

    with LiveServer(_load_example("custom_persistence_server").app) as server, httpx.Client(base_url=server.url,
                                                                                           timeout=60) as client:
        assert turn(client, "alice", "hello there")[-1] == "hello there"
        assert turn(client, "bob", "good morning")[-1] == "good morning"
        missing = client.post("/chat_stream", json={"user_input": "who am I?"})
        assert missing.status_code == 400 and missing.json()["field"] == "X-Conversation-Id"
    restarted = _load_example("custom_persistence_server")
    with LiveServer(restarted.app) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        assert turn(client, "alice", "second turn")[-1] == "second turn"
        assert turn(client, "alice", "", regenerate=True)[-1] == "second turn"
    with sqlite3.connect(database) as db:
        records = dict(db.execute("SELECT key, record FROM conversations"))
    alice = restarted.ChatPrompt.from_dict(json.loads(records["alice"]))
    assert [c.get_message() for c in alice.requester_messages] == ["hello there", "second turn"]
    assert [c.get_message() for c in alice.responder_messages] == ["hello there", "second turn"]
    assert json.loads(records["bob"])["requester_messages"][0]["message"] == "good morning"
    assert restarted.chat_stream.admission.num_running == 0


# -- the servers with a real model ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_quick_start_server_streams_two_turns(example_workdir: Path):
    with _serve("quick_start_server", example_workdir) as server:
        with session_client(server.url, timeout=120) as client:
            headers, chunks, segments = _stream_chat(client, "Hello")
            assert "set-cookie" in headers  # the session that keeps the conversation
            _check_real_model_reply(headers, segments)
            assert len(chunks) > 1, "the reply arrived in one piece instead of streaming"
            headers, _, segments = _stream_chat(client, "What is the capital of France?")
            _check_real_model_reply(headers, segments)


@pytest.mark.slow
def test_loadtime_server_shows_the_load_and_streams(example_workdir: Path):
    with _serve("loadtime_server", example_workdir) as server:
        with session_client(server.url, timeout=120) as client:
            headers, _, segments = _stream_chat(client, "Hello")
            _check_real_model_reply(headers, segments)
        assert f'Loading "{DOCUMENTED_MODEL_PATH}"' in server.stderr_text()
    # the first run recorded the load time for the next run's progress bar
    records = list((example_workdir / "chatstream-cache").rglob("*.json"))
    assert records, "LoadTime stored no load time"


@pytest.mark.slow
def test_one_line_setup_server_serves_the_page_and_the_apis(example_workdir: Path):
    with _serve("one_line_setup_server", example_workdir) as server:
        with session_client(server.url, timeout=120) as client:
            page = client.get("/")
            assert page.status_code == 200
            assert page.headers["content-type"].startswith("text/html")
            assert "chatstream.js" in page.text
            assert "Hello! Ask me anything." in page.text  # web_ui_params reached the page
            script = client.get("/chatstream.js")
            assert script.status_code == 200
            assert script.headers["content-type"].startswith("text/javascript")
            headers, _, segments = _stream_chat(client, "Hello")
            final = _check_real_model_reply(headers, segments)
            assert final
            # Without client_roles, a server's prompts and load are not public (README: Migrating ...).
            for path in ("/get_prompt", "/get_load", "/get_resource_usage"):
                denied = client.get(path)
                assert denied.status_code == 403 and denied.json()["message"] == "Forbidden"


# -- the console example ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_console_chat_answers_and_exits(example_workdir: Path):
    result = subprocess.run([sys.executable, str(EXAMPLES_DIR / "console_chat.py")], cwd=example_workdir,
                            env=_example_env(example_workdir), input="Hello\nexit\n", capture_output=True,
                            text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "YOU: " in result.stdout
    assert "AI : " in result.stdout
    reply = result.stdout.split("AI : ", 1)[1].split("\nYOU: ", 1)[0]
    assert reply.strip(), result.stdout
