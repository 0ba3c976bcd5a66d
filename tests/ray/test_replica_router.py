"""The ingress's routing rule (`ReplicaRouter`) and what it reads from requests (`route_keys`)."""

from __future__ import annotations

import json

from chatstream.ray.asgi_bridge import ProxiedRequest, ResponseStart
from chatstream.ray.route_keys import learned_keys, message_prefix_hashes, route_key
from chatstream.ray.router import ReplicaRouter, RouteKey, rendezvous_order

NAMES = ("engine-0", "engine-1", "engine-2")


def _router() -> ReplicaRouter:
    router = ReplicaRouter(NAMES)
    for name in NAMES:
        router.mark_up(name)
    return router


def test_a_conversation_key_has_one_home_and_only_a_dead_homes_keys_move():
    keys = [f"conversation:{i}" for i in range(300)]
    homes = {key: rendezvous_order(key, NAMES)[0] for key in keys}
    assert set(homes.values()) == set(NAMES)  # spread over every replica
    survivors = ("engine-0", "engine-2")
    for key, home in homes.items():
        moved = rendezvous_order(key, survivors)[0]
        assert moved == home or home == "engine-1"  # consistent: only engine-1's keys move


def test_sticky_keys_follow_the_replica_that_served_them_while_it_lives():
    router = _router()
    key = RouteKey(sticky="session:abc")
    home = router.route(key).replicas[0]
    other = next(name for name in NAMES if name != home)
    router.served(other, key)  # e.g. the home was full, another replica took the turn
    assert router.route(key).replicas[0] == other and router.route(key).rule == "conversation"
    router.mark_down(other)
    assert router.route(key).replicas[0] != other and other not in router.route(key).replicas


def test_a_first_turn_is_learned_from_its_response():
    router = _router()
    start = ResponseStart(200, (("x-chatstream-conversation-id", "c1"),
                                ("set-cookie", "sid=S1.aw0_WA.sig; HttpOnly; Path=/")))
    assert learned_keys(start) == ["conversation:c1", "session:S1"]
    router.served("engine-2", RouteKey(), learned_keys(start))
    assert router.route(RouteKey(sticky="session:S1")).replicas[0] == "engine-2"
    assert router.route(RouteKey(sticky="conversation:c1")).replicas[0] == "engine-2"


def test_stateless_chats_go_to_the_longest_known_prefix_else_the_least_loaded():
    router = _router()
    router.started("engine-0")
    turn1 = [{"role": "user", "content": "hi"}]
    route = router.route(RouteKey(prefix_hashes=message_prefix_hashes(turn1)))
    assert route.rule == "least_loaded" and route.replicas[0] == "engine-1" and route.replicas[-1] == "engine-0"
    router.served("engine-2", RouteKey(prefix_hashes=message_prefix_hashes(turn1)))
    turn2 = turn1 + [{"role": "assistant", "content": "hello"}, {"role": "user", "content": "more"}]
    route = router.route(RouteKey(prefix_hashes=message_prefix_hashes(turn2)))
    assert route.rule == "prefix" and route.replicas[0] == "engine-2"
    other = [{"role": "user", "content": "something else"}]
    assert router.route(RouteKey(prefix_hashes=message_prefix_hashes(other))).rule == "least_loaded"


def test_no_live_replica_routes_nowhere():
    router = ReplicaRouter(NAMES)
    assert router.route(RouteKey(sticky="session:x")).replicas == ()


def test_route_keys_read_the_conversation_the_cookie_and_the_messages():
    body = json.dumps({"user_input": "hi", "conversation_id": "c9"}).encode()
    assert route_key(ProxiedRequest("POST", "/chat_stream", body=body)).sticky == "conversation:c9"
    with_cookie = ProxiedRequest("POST", "/chat_stream", headers=(("cookie", "a=1; sid=S2.ts.sig"),), body=b"{}")
    assert route_key(with_cookie).sticky == "session:S2"
    assert route_key(ProxiedRequest("POST", "/chat_stream", body=b"not json")) == RouteKey()
    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    key = route_key(ProxiedRequest("POST", "/v1/chat/completions", body=json.dumps({"messages": messages}).encode()))
    assert key.prefix_hashes == message_prefix_hashes(messages) and len(set(key.prefix_hashes)) == 2
    assert message_prefix_hashes(messages[:1]) == key.prefix_hashes[:1]  # chained: equal prefixes, equal hashes
    assert route_key(ProxiedRequest("GET", "/health")) == RouteKey()
