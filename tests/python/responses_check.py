"""The Responses API through the official `openai` client against a
running ragd: text, streamed events adding up to the final text,
structured output through `text.format`, a forced function call and its
result sent back, and the unsupported stateful fields refused.

    python tests/python/responses_check.py http://127.0.0.1:PORT
"""
import json
import sys

import jsonschema
from openai import BadRequestError, NotFoundError, OpenAI

base = sys.argv[1].rstrip("/") + "/v1"
client = OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=300)
GEN = "smollm2-135m-instruct-q4_1"

resp = client.responses.create(model=GEN, input="What is the capital of France?", max_output_tokens=200, temperature=0)
assert resp.object == "response" and resp.status in ("completed", "incomplete"), resp
assert resp.output_text.strip(), resp
assert resp.usage.input_tokens > 0 and resp.usage.output_tokens > 0, resp.usage

# Streamed: the deltas make the final text; the sequence ends with the
# finished response (completed, or incomplete at max_output_tokens).
kinds, deltas, final = [], "", None
for event in client.responses.create(model=GEN, input="What is the capital of France?", max_output_tokens=200,
                                     temperature=0, stream=True):
    kinds.append(event.type)
    if event.type == "response.output_text.delta":
        deltas += event.delta
    if event.type in ("response.completed", "response.incomplete"):
        final = event.response
assert kinds[0] == "response.created" and kinds[-1] in ("response.completed", "response.incomplete"), kinds
assert "response.output_text.done" in kinds and final is not None, kinds
assert deltas == final.output_text == resp.output_text, (deltas, final.output_text, resp.output_text)

# Instructions and a list of input items.
resp = client.responses.create(model=GEN, instructions="Answer in one word.", max_output_tokens=20, temperature=0,
                               input=[{"role": "user", "content": [{"type": "input_text", "text": "Colour of the sky?"}]}])
assert resp.output_text.strip(), resp

# Structured output.
schema = {"type": "object", "additionalProperties": False, "required": ["city", "country"],
          "properties": {"city": {"type": "string", "maxLength": 20}, "country": {"type": "string", "maxLength": 20}}}
resp = client.responses.create(model=GEN, input="A city and its country.", max_output_tokens=80, temperature=0,
                               text={"format": {"type": "json_schema", "name": "place", "schema": schema, "strict": True}})
jsonschema.validate(json.loads(resp.output_text), schema)

# A forced function call, then its result.
tools = [{"type": "function", "name": "get_weather", "description": "Weather in a city",
          "parameters": {"type": "object", "additionalProperties": False, "required": ["city"],
                         "properties": {"city": {"type": "string", "maxLength": 30}}}}]
resp = client.responses.create(model=GEN, input="Weather in Paris?", tools=tools, max_output_tokens=60,
                               tool_choice={"type": "function", "name": "get_weather"})
calls = [o for o in resp.output if o.type == "function_call"]
assert len(calls) == 1 and calls[0].name == "get_weather", resp.output
assert "city" in json.loads(calls[0].arguments), calls[0]
follow = client.responses.create(model=GEN, tools=tools, max_output_tokens=40, temperature=0, input=[
    {"role": "user", "content": "Weather in Paris?"},
    {"type": "function_call", "call_id": calls[0].call_id, "name": calls[0].name, "arguments": calls[0].arguments},
    {"type": "function_call_output", "call_id": calls[0].call_id, "output": json.dumps({"temperature_c": 21})},
])
assert follow.output_text.strip(), follow.output

# Stateful fields and bad input.
for kwargs, param in [(dict(store=True), "store"), (dict(previous_response_id="resp_123"), "previous_response_id"),
                      (dict(input=[{"type": "image_generation_call"}]), "input"), (dict(input=None), "input")]:
    args = dict(model=GEN, input="hi", max_output_tokens=5)
    args.update(kwargs)
    if args["input"] is None:
        del args["input"]
    try:
        client.responses.create(**args)
        raise SystemExit(f"accepted: {kwargs}")
    except BadRequestError as e:
        assert e.body["param"] == param, (kwargs, e.body)
try:
    client.responses.create(model="no-such-model", input="hi")
    raise SystemExit("an unknown model was accepted")
except NotFoundError:
    pass

print(f"responses ok: {resp.output[0].type}; text {final.output_text.strip()[:40]!r}")
