"""Structured outputs with the real SmolLM2 behind a live server: every answer validates.

Twenty json_schema requests over five schemas (nested objects, arrays, enums, required fields)
run at once, at temperature 0 and at temperature 1, through the `openai` client; each answer must
be JSON that `jsonschema` accepts. `client.chat.completions.parse` with a pydantic model must give
the parsed object.
"""

from __future__ import annotations

import asyncio
import json

import jsonschema
import openai
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, Field

from chatstream import ChatStream
from chatstream.http.openai_routes import add_openai_routes
from chatstream.http.server_state import ServerState
from live_server import LiveServer

pytestmark = pytest.mark.slow

NAME = {"type": "string", "minLength": 1, "maxLength": 24}
SCHEMAS = {
    "person": {"type": "object", "properties": {
        "name": NAME, "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "address": {"type": "object", "properties": {"city": NAME, "country": NAME},
                    "required": ["city", "country"], "additionalProperties": False}},
        "required": ["name", "age", "address"], "additionalProperties": False},
    "todo": {"type": "object", "properties": {
        "items": {"type": "array", "minItems": 1, "maxItems": 4, "items": {
            "type": "object", "properties": {"task": NAME, "done": {"type": "boolean"}},
            "required": ["task", "done"], "additionalProperties": False}}},
        "required": ["items"], "additionalProperties": False},
    "sentiment": {"type": "object", "properties": {
        "sentiment": {"enum": ["positive", "negative", "neutral"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1}},
        "required": ["sentiment", "confidence"], "additionalProperties": False},
    "product": {"type": "object", "properties": {
        "name": NAME, "price": {"type": "number", "minimum": 0},
        "tags": {"type": "array", "items": NAME, "maxItems": 3},
        "stock": {"type": "object", "properties": {"warehouse": {"enum": ["north", "south"]},
                                                   "count": {"type": "integer", "minimum": 0}},
                  "required": ["warehouse", "count"], "additionalProperties": False}},
        "required": ["name", "price", "stock"], "additionalProperties": False},
    "event": {"type": "object", "properties": {
        "title": NAME, "year": {"type": "integer", "minimum": 1900, "maximum": 2100},
        "guests": {"type": "array", "maxItems": 3, "items": {"type": "object", "properties": {
            "name": NAME, "role": {"enum": ["host", "guest", "speaker"]}}, "required": ["name", "role"],
            "additionalProperties": False}}},
        "required": ["title", "year", "guests"], "additionalProperties": False},
}
PROMPTS = ["Describe it as JSON.", "Give me an example as JSON.", "Answer in JSON about a summer day.",
           "Make up a JSON record."]


class City(BaseModel):
    name: str = Field(max_length=24)
    population: int = Field(ge=0, le=100_000_000)
    coastal: bool


@pytest.fixture(scope="module")
def server():
    chat_stream = ChatStream(model="smollm2", num_of_concurrent_executions=20, max_queue_size=20)
    state = ServerState(model_name="smollm2")
    state.set_ready(chat_stream)
    app = FastAPI()
    app.state.server = state
    add_openai_routes(app)
    try:
        with LiveServer(app) as live:
            yield live
    finally:
        chat_stream.shutdown()


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_twenty_json_schema_requests_all_validate(server, temperature):
    async def run() -> list[tuple[str, str]]:
        async with openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=600) as client:
            async def one(name: str, prompt: str, seed: int) -> tuple[str, str]:
                answer = await client.chat.completions.create(
                    model="smollm2", messages=[{"role": "user", "content": f"{prompt} Topic: {name}."}],
                    max_tokens=300, temperature=temperature, seed=seed,
                    response_format={"type": "json_schema",
                                     "json_schema": {"name": name, "schema": SCHEMAS[name], "strict": True}})
                assert answer.choices[0].finish_reason == "stop"
                return name, answer.choices[0].message.content

            jobs = [one(name, prompt, seed) for seed, (name, prompt) in
                    enumerate((n, p) for n in SCHEMAS for p in PROMPTS)]
            return await asyncio.gather(*jobs)

    answers = asyncio.run(run())
    assert len(answers) == 20
    for name, text in answers:
        jsonschema.validate(json.loads(text), SCHEMAS[name])


def test_parse_gives_the_pydantic_object(server):
    with openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=300) as client:
        completion = client.chat.completions.parse(
            model="smollm2", messages=[{"role": "user", "content": "Tell me about Lisbon."}],
            response_format=City, max_tokens=200, temperature=0)
    city = completion.choices[0].message.parsed
    assert isinstance(city, City) and city.name
