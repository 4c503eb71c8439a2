"""Tool calls through the official `openai` client against a running ragd
with its default generator: forced calls (named and `required`) parsed
from a non-streamed and a streamed answer, a second turn with the tool's
result answered in text, `tool_choice: "none"` giving no call, and bad
tool requests refused with a 400 naming the field.

    python tests/python/tool_calls_check.py http://127.0.0.1:PORT
"""
import json
import sys

from openai import BadRequestError, OpenAI

base = sys.argv[1].rstrip("/") + "/v1"
client = OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=300)
GEN = "smollm2-135m-instruct-q4_1"
TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather in a city",
        "parameters": {"type": "object", "additionalProperties": False, "required": ["city"],
                       "properties": {"city": {"type": "string", "maxLength": 30},
                                      "unit": {"enum": ["celsius", "fahrenheit"]}}}}},
    {"type": "function", "function": {
        "name": "get_time", "description": "Current time in a time zone",
        "parameters": {"type": "object", "additionalProperties": False, "required": ["zone"],
                       "properties": {"zone": {"type": "string", "maxLength": 30}}}}},
]
ASK = [{"role": "user", "content": "What is the weather in Paris right now?"}]
NAMED = {"type": "function", "function": {"name": "get_weather"}}


def check_call(call, names=("get_weather",)):
    assert call.type == "function" and call.id.startswith("call_"), call
    assert call.function.name in names, call
    args = json.loads(call.function.arguments)
    spec = next(t["function"]["parameters"] for t in TOOLS if t["function"]["name"] == call.function.name)
    assert set(spec["required"]) <= set(args) <= set(spec["properties"]), args
    return args


# Forced by name, not streamed.
resp = client.chat.completions.create(model=GEN, messages=ASK, tools=TOOLS, tool_choice=NAMED, max_tokens=80, temperature=0)
choice = resp.choices[0]
assert choice.finish_reason == "tool_calls", choice
assert choice.message.tool_calls and len(choice.message.tool_calls) == 1, choice.message
call = choice.message.tool_calls[0]
args = check_call(call)

# The same, streamed: the client's deltas add up to one call.
name, arguments, finish, ids = "", "", None, set()
for chunk in client.chat.completions.create(model=GEN, messages=ASK, tools=TOOLS, tool_choice=NAMED, max_tokens=80,
                                            temperature=0, stream=True):
    if not chunk.choices:
        continue
    c = chunk.choices[0]
    for d in c.delta.tool_calls or []:
        ids.add(d.id) if d.id else None
        name += d.function.name or ""
        arguments += d.function.arguments or ""
    finish = c.finish_reason or finish
assert finish == "tool_calls" and name == "get_weather" and len(ids) == 1, (finish, name, ids)
assert json.loads(arguments) == args, (arguments, args)

# `required` with two tools, seeded sampling: a call to one of them.
for seed in range(3):
    resp = client.chat.completions.create(model=GEN, messages=ASK, tools=TOOLS, tool_choice="required", max_tokens=80, seed=seed)
    assert resp.choices[0].finish_reason == "tool_calls", resp.choices[0]
    check_call(resp.choices[0].message.tool_calls[0], names=("get_weather", "get_time"))

# Second turn: the tool's result goes back; the answer is text.
turn2 = ASK + [
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": call.id, "type": "function", "function": {"name": call.function.name, "arguments": call.function.arguments}}]},
    {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"city": "Paris", "temperature_c": 21, "sky": "sunny"})},
]
resp = client.chat.completions.create(model=GEN, messages=turn2, tools=TOOLS, max_tokens=60, temperature=0)
answer = resp.choices[0].message
assert not answer.tool_calls and answer.content and answer.content.strip(), answer
assert resp.choices[0].finish_reason in ("stop", "length"), resp.choices[0]
# The prompt the model saw holds the earlier call and the result.
assert resp.usage.prompt_tokens > 100, resp.usage

# `none`: the tools are not offered and nothing is parsed as a call.
resp = client.chat.completions.create(model=GEN, messages=ASK, tools=TOOLS, tool_choice="none", max_tokens=40, temperature=0)
assert not resp.choices[0].message.tool_calls and resp.choices[0].finish_reason != "tool_calls", resp.choices[0]

# Bad requests: 400s naming the field.
for kwargs, param in [
    (dict(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "nope"}}), "tool_choice"),
    (dict(tools=[{"type": "function", "function": {"name": "bad name"}}]), "tools"),
    (dict(tool_choice="required"), "tool_choice"),
    (dict(tools=TOOLS, tool_choice="required", response_format={"type": "json_object"}), "response_format"),
]:
    try:
        client.chat.completions.create(model=GEN, messages=ASK, max_tokens=5, **kwargs)
        raise SystemExit(f"accepted: {kwargs}")
    except BadRequestError as e:
        assert e.body["param"] == param, (kwargs, e.body)

print(f"tool calls ok: {call.function.name}({call.function.arguments}); second turn: {answer.content.strip()[:60]!r}")
