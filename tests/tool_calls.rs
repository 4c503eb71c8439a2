//! Tool calls with the real generator through the official `openai`
//! Python client (`tests/python/tool_calls_check.py`): forced calls parsed
//! streamed and not, a second turn answered in text, `tool_choice: none`;
//! and each model family's tool-call format over HTTP.
//!
//! Needs a Python with `openai`: `RAGD_TEST_PYTHON` names it (`scripts/test`
//! sets it up), else `python3`.

use ragd_suite::{generator_only, get_json, post_json, run_python_check, start_on_own_thread};
use serde_json::{json, Value};

const GEN: &str = "smollm2-135m-instruct-q4_1";

#[test]
fn the_openai_client_gets_tool_calls_and_sends_results_back() {
    let (addr, _server) = start_on_own_thread(generator_only);
    run_python_check(addr, "tool_calls_check.py", "tool calls ok: get_weather(");
}

/// Each tool-call format (`--tool-call-format`) round-trips a forced call
/// with the real generator: the constrained answer has the format's shape
/// and parses into `tool_calls`; the call, written back in the format with
/// the tool's result, gets a text answer. Without the flag the format is
/// judged from the model: SmolLM2's list in `<tool_call>`.
#[tokio::test(flavor = "multi_thread")]
async fn each_tool_call_format_round_trips_a_call() {
    let weather = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                       "required": ["city"], "additionalProperties": false}}}]);
    let ask = json!([{"role": "user", "content": "What is the weather in Paris?"}]);
    for format in [
        None,
        Some("hermes"),
        Some("llama3"),
        Some("mistral"),
        Some("smollm2"),
    ] {
        let (addr, _server) = start_on_own_thread(|c| {
            generator_only(c);
            c.models.tool_call_format = format.map(|f| f.parse().unwrap());
        });
        let base = format!("http://{addr}");
        let models = get_json(&base, "/v1/models").await;
        let shown = models["data"][0]["tool_call_format"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(shown, format.unwrap_or("smollm2"), "{models}");

        let body = json!({"model": GEN, "messages": ask, "tools": weather, "max_tokens": 60, "temperature": 0,
                          "tool_choice": {"type": "function", "function": {"name": "get_weather"}}});
        let answer: Value = post_json(&base, "/v1/chat/completions", &body)
            .await
            .json()
            .await
            .unwrap();
        let choice = &answer["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls", "{shown}: {answer}");
        let call = &choice["message"]["tool_calls"][0];
        assert_eq!(call["function"]["name"], "get_weather", "{shown}: {answer}");
        let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert!(args["city"].is_string(), "{shown}: {args}");

        let mut turn2 = ask.as_array().unwrap().clone();
        turn2.push(json!({"role": "assistant", "content": null, "tool_calls": [call]}));
        turn2.push(json!({"role": "tool", "tool_call_id": call["id"], "content": "{\"sky\": \"sunny\", \"celsius\": 21}"}));
        let body = json!({"model": GEN, "messages": turn2, "tools": weather, "tool_choice": "none",
                          "max_tokens": 30, "temperature": 0});
        let answer: Value = post_json(&base, "/v1/chat/completions", &body)
            .await
            .json()
            .await
            .unwrap();
        let message = &answer["choices"][0]["message"];
        assert!(message["tool_calls"].is_null(), "{shown}: {answer}");
        assert!(
            !message["content"].as_str().unwrap().trim().is_empty(),
            "{shown}: {answer}"
        );
    }
}
