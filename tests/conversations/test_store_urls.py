"""Store URLs, options and the default file location."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatstream.conversations import (
    StoreConfigError,
    StoreOptions,
    days,
    default_store_path,
    default_store_url,
    open_store,
    parse_store_url,
    redacted,
)

pytestmark = pytest.mark.anyio


def test_memory_and_sqlite_urls():
    assert parse_store_url("memory").kind == "memory"
    relative = parse_store_url("sqlite:///data/chats.sqlite3")
    assert (relative.kind, relative.sqlite_path, relative.sqlite_synchronous) == (
        "sqlite", Path("data/chats.sqlite3"), "normal")
    absolute = parse_store_url("sqlite:////var/lib/chatstream/chats.sqlite3?synchronous=full")
    assert (absolute.sqlite_path, absolute.sqlite_synchronous) == (Path("/var/lib/chatstream/chats.sqlite3"), "full")
    assert parse_store_url("sqlite:///~/chats.db").sqlite_path == Path("~/chats.db").expanduser()


def test_redis_urls_keep_their_own_parameters_and_take_a_prefix():
    parsed = parse_store_url("redis://:pw@cache.internal:6380/2?prefix=prod&socket_keepalive=true")
    assert parsed.kind == "redis" and parsed.redis_prefix == "prod"
    assert parsed.redis_url == "redis://:pw@cache.internal:6380/2?socket_keepalive=true"
    assert parse_store_url("redis://localhost:6379/0").redis_prefix == "chatstream"
    assert parse_store_url("unix:///run/redis.sock?db=1").kind == "redis"


@pytest.mark.parametrize(("url", "words"), [
    ("", "required"),
    ("postgres://db/chats", "unknown kind 'postgres'"),
    ("sqlite://", "sqlite:///relative/path"),
    ("sqlite://host/file.db", "sqlite:///relative/path"),
    ("sqlite:///", "give a file path"),
    ("sqlite:///:memory:", "give a file path"),
    ("sqlite:///x.db?synchronous=off", "synchronous must be normal or full"),
    ("sqlite:///x.db?journal=delete", "unknown parameter 'journal'"),
    ("redis://localhost:6379/0?prefix=a:b", "prefix must be"),
    ("redis://localhost:6379/notanumber", "must be a database number"),
    ("redis://:secret@localhost:6379/x", "***"),
])
def test_bad_urls_say_what_is_wrong(url, words):
    with pytest.raises(StoreConfigError) as caught:
        parse_store_url(url)
    assert words in str(caught.value)
    assert "secret" not in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_redacted_hides_only_the_password():
    assert redacted("redis://user:pw@h:1/0") == "redis://user:***@h:1/0"
    assert redacted("redis://h:1/0") == "redis://h:1/0"


def test_the_default_store_is_a_file_in_the_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("CHATSTREAM_DATA_DIR", str(tmp_path / "data"))
    assert default_store_path() == tmp_path / "data" / "conversations.sqlite3"
    assert parse_store_url(default_store_url()).sqlite_path == default_store_path()
    monkeypatch.delenv("CHATSTREAM_DATA_DIR")
    assert default_store_path().name == "conversations.sqlite3" and "chatstream" in str(default_store_path())


async def test_the_default_url_opens_and_creates_its_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("CHATSTREAM_DATA_DIR", str(tmp_path / "new" / "folder"))
    store = await open_store(default_store_url())
    await store.create_session()
    await store.close()
    assert default_store_path().is_file()


def test_options():
    assert days(2) == 172800.0 and days(None) is None
    assert StoreOptions().conversation_ttl_s is None  # conversations are kept unless a TTL is given
    assert StoreOptions(reply_lease_s=9).heartbeat_s == 3
    for bad in ({"conversation_ttl_s": 0}, {"session_ttl_s": -1}, {"reply_lease_s": None},
                {"reply_lease_s": float("inf")}, {"conversation_ttl_s": True}):
        with pytest.raises(ValueError):
            StoreOptions(**bad)
