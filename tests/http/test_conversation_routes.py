"""The conversation routes of `chatstream serve` over real HTTP: list (newest first, paginated),
create, read, rename / set the system text, delete, export, import and fork; only this session's
conversations; every bad input a 4xx JSON naming the problem; all of them in /openapi.json."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from conversation_servers import mock_server
from live_server import LiveServer, read_chat_stream, session_client

UNKNOWN = "0f8fad5b-d9cb-469f-a165-70867728950e"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    path = tmp_path_factory.mktemp("routes") / "conversations.sqlite3"
    with mock_server(f"sqlite:///{path}") as live:
        yield live

JSON = {"Content-Type": "application/json"}  # what the origin guard asks of every JSON body


def _turn(client: httpx.Client, conversation_id: str, text: str) -> None:
    response = client.post("/chat_stream", json={"user_input": text, "conversation_id": conversation_id})
    assert response.status_code == 200, response.text
    read_chat_stream(response)


def test_create_read_rename_and_delete(server: LiveServer) -> None:
    with session_client(server.url) as client:
        assert client.get("/conversations").json() == {"conversations": [], "next_cursor": None}
        created = client.post("/conversations", json={"system": "You are terse."})
        assert created.status_code == 201
        conversation = created.json()
        assert conversation["title"] == "" and conversation["system"] == "You are terse."
        assert conversation["messages"] == []
        _turn(client, conversation["id"], "What is a cache?\nA second line")
        read = client.get(f"/conversations/{conversation['id']}").json()
        assert read["title"] == "What is a cache?"  # the first line of the first message
        assert [(m["role"], m["text"], m["status"]) for m in read["messages"]] == [
            ("user", "What is a cache?\nA second line", "complete"),
            ("assistant", "What is a cache?\nA second line", "complete")]
        reply = read["messages"][1]
        assert reply["finish_reason"] == "stop" and reply["stats"]["completion_tokens"] == 6
        assert "tokens" not in reply  # the page needs no token ids
        renamed = client.patch(f"/conversations/{conversation['id']}", json={"title": "Caches"}).json()
        assert renamed["title"] == "Caches" and renamed["system"] == "You are terse."
        assert client.patch(f"/conversations/{conversation['id']}", json={"system": ""}).json()["system"] == ""
        assert client.delete(f"/conversations/{conversation['id']}").status_code == 204
        gone = client.get(f"/conversations/{conversation['id']}")
        assert gone.status_code == 404 and gone.json()["error"] == "not_found"
        assert client.delete(f"/conversations/{conversation['id']}").status_code == 404


def test_the_list_is_newest_first_and_paginated(server: LiveServer) -> None:
    with session_client(server.url) as client:
        ids = [client.post("/conversations", json={"title": f"c{i}"}).json()["id"] for i in range(5)]
        _turn(client, ids[1], "activity moves a conversation to the top")
        first = client.get("/conversations", params={"limit": 2}).json()
        assert [c["id"] for c in first["conversations"]] == [ids[1], ids[4]]
        assert first["conversations"][0]["num_messages"] == 2
        second = client.get("/conversations", params={"limit": 2, "cursor": first["next_cursor"]}).json()
        third = client.get("/conversations", params={"limit": 2, "cursor": second["next_cursor"]}).json()
        assert [c["id"] for c in second["conversations"] + third["conversations"]] == [ids[3], ids[2], ids[0]]
        assert third["next_cursor"] is None
        for bad, field in (({"limit": 0}, "limit"), ({"limit": "many"}, "limit"), ({"limit": 101}, "limit"),
                           ({"cursor": "not-a-cursor"}, "cursor")):
            response = client.get("/conversations", params=bad)
            assert response.status_code == 400 and response.json()["field"] == field, response.text


def test_export_import_and_fork(server: LiveServer) -> None:
    with session_client(server.url) as client:
        source = client.post("/conversations", json={"system": "Be kind."}).json()["id"]
        for text in ("one", "two", "three"):
            _turn(client, source, text)
        exported = client.get(f"/conversations/{source}/export")
        assert exported.status_code == 200
        assert "attachment" in exported.headers["content-disposition"]
        data = exported.json()
        assert data["format"] == "chatstream.conversation" and data["version"] == 1
        assert [m["text"] for m in data["messages"]] == ["one", "one", "two", "two", "three", "three"]
        imported = client.post("/conversations/import", content=json.dumps(data), headers=JSON)
        assert imported.status_code == 201
        copy = imported.json()
        assert copy["id"] != source and copy["system"] == "Be kind."
        assert [m["text"] for m in copy["messages"]] == [m["text"] for m in data["messages"]]
        # Continuing the copy does not touch the source.
        _turn(client, copy["id"], "four")
        assert len(client.get(f"/conversations/{source}").json()["messages"]) == 6

        # Fork before the second user message: edit-and-resend starts from there.
        second_user = client.get(f"/conversations/{source}").json()["messages"][2]
        forked = client.post(f"/conversations/{source}/fork", json={"before_message_id": second_user["id"]})
        assert forked.status_code == 201
        assert [m["text"] for m in forked.json()["messages"]] == ["one", "one"]
        _turn(client, forked.json()["id"], "two, edited")
        assert [m["text"] for m in client.get(f"/conversations/{forked.json()['id']}").json()["messages"]] == [
            "one", "one", "two, edited", "two, edited"]
        reply = client.get(f"/conversations/{source}").json()["messages"][1]["id"]
        not_user = client.post(f"/conversations/{source}/fork", json={"before_message_id": reply})
        assert not_user.status_code == 400 and not_user.json()["field"] == "before_message_id"


def test_bad_input_is_a_4xx_naming_the_problem(server: LiveServer) -> None:
    with session_client(server.url) as client:
        conversation = client.post("/conversations", json={}).json()["id"]
        cases = [
            (client.get("/conversations/not-an-id"), 400, "conversation_id"),
            (client.get(f"/conversations/{UNKNOWN}"), 404, None),
            (client.patch(f"/conversations/{conversation}", json={"title": 3}), 400, "title"),
            (client.patch(f"/conversations/{conversation}", json={"color": "red"}), 400, "color"),
            (client.patch(f"/conversations/{conversation}", json={"title": "x" * 201}), 400, "title"),
            (client.post("/conversations", content=b"{not json", headers=JSON), 400, None),
            (client.post(f"/conversations/{conversation}/fork", json={}), 400, "before_message_id"),
            (client.post(f"/conversations/{conversation}/fork", json={"before_message_id": "x"}), 400,
             "before_message_id"),
            (client.post("/conversations/import", content=b"[1, 2", headers=JSON), 400, None),
            (client.post("/conversations/import", json=[1, 2]), 400, None),
            (client.post("/conversations/import", json={"format": "other"}), 400, "format"),
        ]
        for response, status, field in cases:
            assert response.status_code == status, (response.request.url, response.text)
            body = response.json()
            assert body["error"] in ("invalid_request", "not_found") and body["detail"]
            if field is not None:
                assert body["field"] == field, body
        # A malformed import names every problem, with its path.
        bad = {"format": "chatstream.conversation", "version": 1, "created_at": 1.0, "updated_at": 1.0,
               "messages": [{"id": UNKNOWN, "role": "assistant", "text": "hi", "created_at": 1.0},
                            {"id": UNKNOWN, "role": "user", "text": 5, "created_at": 1.0}]}
        response = client.post("/conversations/import", json=bad)
        assert response.status_code == 400
        fields = {p["field"] for p in response.json()["problems"]}
        assert "messages[1].text" in fields
        bad["messages"][1]["text"] = "hello"
        fields = {p["field"] for p in client.post("/conversations/import", json=bad).json()["problems"]}
        assert {"messages[0].role", "messages[1].role", "messages[1].id"} <= fields


def test_only_this_sessions_conversations(server: LiveServer) -> None:
    with session_client(server.url) as owner, session_client(server.url) as other:
        secret = owner.post("/conversations", json={"title": "mine"}).json()["id"]
        _turn(owner, secret, "private words")
        other.post("/conversations", json={"title": "theirs"})
        assert [c["title"] for c in other.get("/conversations").json()["conversations"]] == ["theirs"]
        for response in (other.get(f"/conversations/{secret}"), other.get(f"/conversations/{secret}/export"),
                         other.patch(f"/conversations/{secret}", json={"title": "stolen"}),
                         other.delete(f"/conversations/{secret}"),
                         other.post(f"/conversations/{secret}/fork", json={"before_message_id": UNKNOWN})):
            assert response.status_code == 404 and "private" not in response.text
            assert response.json() == {"error": "not_found", "detail": f"conversation {secret} not found"}
        assert owner.get(f"/conversations/{secret}").json()["title"] == "mine"
        # Without a session: an empty list, and nobody's conversation.
        assert httpx.get(server.url + "/conversations").json()["conversations"] == []
        assert httpx.get(server.url + f"/conversations/{secret}").status_code == 404


def test_every_route_is_in_the_openapi_document(server: LiveServer) -> None:
    document = httpx.get(server.url + "/openapi.json").json()
    paths = document["paths"]
    assert set(paths["/conversations"]) == {"get", "post"}
    assert set(paths["/conversations/{conversation_id}"]) == {"get", "patch", "delete"}
    assert set(paths["/conversations/{conversation_id}/export"]) == {"get"}
    assert set(paths["/conversations/{conversation_id}/fork"]) == {"post"}
    assert set(paths["/conversations/import"]) == {"post"}
    schema = paths["/conversations/import"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/ConversationExport"}
    assert "ConversationExport" in document["components"]["schemas"]
    fork = paths["/conversations/{conversation_id}/fork"]["post"]["requestBody"]["content"]["application/json"]
    assert "before_message_id" in fork["schema"]["properties"]
