"""Structured outputs through the official `openai` client: 20 JSON schemas
(nested objects, arrays, enums, bounded numbers, required and optional
fields) x 5 seeds, streamed and not, against a running ragd. Every output
must parse and validate against its schema (`jsonschema`).

    python tests/python/structured_outputs_check.py http://127.0.0.1:PORT

Prints one summary line; exits non-zero on the first invalid output.
Run by tests/structured_outputs.rs, which starts the server.
"""
import json
import sys
from concurrent.futures import ThreadPoolExecutor

import jsonschema
from openai import BadRequestError, OpenAI

base = sys.argv[1].rstrip("/") + "/v1"
client = OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=300)
GEN = "smollm2-135m-instruct-q4_1"

S = {"type": "string", "maxLength": 12}
SCHEMAS = [
    {"type": "object", "properties": {"name": S, "age": {"type": "integer", "minimum": 0, "maximum": 120}}, "required": ["name", "age"]},
    {"type": "object", "properties": {"color": {"enum": ["red", "green", "blue"]}}, "required": ["color"]},
    {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]},
    {"type": "object", "properties": {"tags": {"type": "array", "items": S, "minItems": 1, "maxItems": 3}}, "required": ["tags"]},
    {"type": "object", "properties": {"point": {"type": "object", "properties": {"x": {"type": "number", "minimum": -10, "maximum": 10}, "y": {"type": "number", "minimum": -10, "maximum": 10}}, "required": ["x", "y"]}}, "required": ["point"]},
    {"type": "object", "properties": {"city": S, "country": S, "population": {"type": "integer", "minimum": 1}}, "required": ["city", "country"]},
    {"type": "object", "properties": {"answer": {"enum": ["yes", "no", "unknown"]}, "confidence": {"type": "number", "minimum": 0, "maximum": 1}}, "required": ["answer", "confidence"]},
    {"type": "object", "properties": {"items": {"type": "array", "maxItems": 3, "items": {"type": "object", "properties": {"id": {"type": "integer", "minimum": 1, "maximum": 99}, "label": S}, "required": ["id", "label"]}}}, "required": ["items"]},
    {"type": "object", "properties": {"title": S, "year": {"type": "integer", "minimum": 1900, "maximum": 2100}, "genre": {"enum": ["drama", "comedy", "sci-fi"]}}, "required": ["title", "year", "genre"]},
    {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}, "minItems": 2, "maxItems": 4},
    {"type": "object", "properties": {"user": {"type": "object", "properties": {"first": S, "last": S, "email": S}, "required": ["first", "last"]}, "active": {"type": "boolean"}}, "required": ["user", "active"]},
    {"type": "object", "properties": {"temperature": {"type": "number", "minimum": -50, "maximum": 60}, "unit": {"enum": ["C", "F"]}}, "required": ["temperature", "unit"]},
    {"type": "object", "properties": {"steps": {"type": "array", "items": S, "minItems": 1, "maxItems": 3}, "done": {"type": "boolean"}}, "required": ["steps", "done"]},
    {"type": "object", "properties": {"price": {"type": "number", "minimum": 0, "maximum": 1000}, "currency": {"enum": ["EUR", "USD", "GBP"]}, "discount": {"type": "integer", "minimum": 0, "maximum": 90}}, "required": ["price", "currency"]},
    {"type": "object", "properties": {"matrix": {"type": "array", "maxItems": 2, "items": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}, "maxItems": 2}}}, "required": ["matrix"]},
    {"type": "object", "properties": {"language": {"enum": ["en", "fr", "de"]}, "words": {"type": "integer", "minimum": 1, "maximum": 500}, "summary": S}, "required": ["language", "words", "summary"]},
    {"type": "object", "properties": {"a": {"type": "object", "properties": {"b": {"type": "object", "properties": {"c": {"type": "integer", "minimum": 0, "maximum": 5}}, "required": ["c"]}}, "required": ["b"]}}, "required": ["a"]},
    {"type": "object", "properties": {"status": {"enum": ["open", "closed"]}, "priority": {"type": "integer", "minimum": 1, "maximum": 5}, "assignee": S}, "required": ["status", "priority"]},
    {"type": "object", "properties": {"lat": {"type": "number", "minimum": -90, "maximum": 90}, "lon": {"type": "number", "minimum": -180, "maximum": 180}, "name": S}, "required": ["lat", "lon"]},
    {"type": "object", "properties": {"values": {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1}, "minItems": 1, "maxItems": 3}, "mean": {"type": "number", "minimum": 0, "maximum": 1}}, "required": ["values", "mean"]},
]
# OpenAI's strict mode closes every object; do the same.
for schema in SCHEMAS:
    stack = [schema]
    while stack:
        s = stack.pop()
        if s.get("type") == "object":
            s.setdefault("additionalProperties", False)
            stack.extend(s.get("properties", {}).values())
        if s.get("type") == "array":
            stack.append(s["items"])
assert len(SCHEMAS) == 20
SEEDS = [1, 2, 3, 4, 5]


def run(case):
    i, seed, stream = case
    schema = SCHEMAS[i]
    fmt = {"type": "json_schema", "json_schema": {"name": f"s{i}", "schema": schema, "strict": True}}
    messages = [{"role": "user", "content": f"Reply with JSON. Keys: {', '.join(schema.get('properties', {})) or 'a list of numbers'}."}]
    kwargs = dict(model=GEN, messages=messages, response_format=fmt, seed=seed, temperature=0.8, max_tokens=200)
    if stream:
        text, finish = "", None
        for chunk in client.chat.completions.create(stream=True, **kwargs):
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                finish = chunk.choices[0].finish_reason or finish
    else:
        resp = client.chat.completions.create(**kwargs)
        text, finish = resp.choices[0].message.content, resp.choices[0].finish_reason
    try:
        value = json.loads(text)
        jsonschema.validate(value, schema)
    except Exception as e:  # noqa: BLE001 - report which case failed and why
        raise SystemExit(f"schema {i} seed {seed} stream {stream}: {text!r} (finish {finish}): {e}")
    return finish


cases = [(i, seed, stream) for i in range(len(SCHEMAS)) for seed in SEEDS for stream in (False, True)]
with ThreadPoolExecutor(16) as pool:
    finishes = list(pool.map(run, cases))
assert all(f == "stop" for f in finishes), finishes

# json_object: any object; a bad schema: a 400 naming response_format.
resp = client.chat.completions.create(model=GEN, messages=[{"role": "user", "content": "JSON please"}],
                                      response_format={"type": "json_object"}, max_tokens=200, seed=1)
assert isinstance(json.loads(resp.choices[0].message.content), dict)
try:
    client.chat.completions.create(model=GEN, messages=[{"role": "user", "content": "x"}],
                                   response_format={"type": "json_schema", "json_schema": {"name": "b", "schema": {"type": "nope"}}})
    raise SystemExit("a bad schema was accepted")
except BadRequestError as e:
    assert e.body["param"] == "response_format", e.body

print(f"structured outputs ok: {len(cases)} outputs valid ({len(SCHEMAS)} schemas x {len(SEEDS)} seeds x streamed and not)")
