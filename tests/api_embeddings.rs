//! `/v1/embeddings` end to end, on the real all-MiniLM-L6-v2.

use base64::Engine as _;
use ragd_suite::{get_text, metric_value, shared_server, start_on_own_thread};
use serde_json::{json, Value};

const MODEL: &str = "all-minilm-l6-v2";

async fn embed(client: &reqwest::Client, base: &str, body: Value) -> Value {
    let r = client
        .post(format!("{base}/v1/embeddings"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    r.json().await.unwrap()
}

fn vector(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[tokio::test]
async fn shapes_formats_and_usage_follow_openai() {
    let base = format!("http://{}", shared_server());
    let c = reqwest::Client::new();
    let texts = [
        "What is the capital of France?",
        "Paris is the capital of France.",
        "Bananas are yellow.",
    ];
    let resp = embed(&c, &base, json!({"model": MODEL, "input": texts})).await;
    assert_eq!(resp["object"], "list");
    assert_eq!(resp["model"], MODEL);
    let data = resp["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    let vs: Vec<Vec<f32>> = data
        .iter()
        .enumerate()
        .map(|(i, d)| {
            assert_eq!(d["object"], "embedding");
            assert_eq!(d["index"], i);
            vector(&d["embedding"])
        })
        .collect();
    for v in &vs {
        assert_eq!(v.len(), 384);
        assert!((cosine(v, v) - 1.0).abs() < 1e-4, "unit length");
    }
    // The question is closer to its answer than to the banana.
    assert!(cosine(&vs[0], &vs[1]) > cosine(&vs[0], &vs[2]) + 0.3);
    let usage = &resp["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() >= 3 * 5);
    assert_eq!(usage["prompt_tokens"], usage["total_tokens"]);

    // base64 is the same vector, little-endian f32.
    let b64 = embed(
        &c,
        &base,
        json!({"model": MODEL, "input": texts[0], "encoding_format": "base64"}),
    )
    .await;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert!(cosine(&decoded, &vs[0]) > 0.99999);
}

#[tokio::test]
async fn token_arrays_embed_like_their_text() {
    let base = format!("http://{}", shared_server());
    let c = reqwest::Client::new();
    // "hello world" in the MiniLM vocabulary.
    let by_text = embed(&c, &base, json!({"model": MODEL, "input": "hello world"})).await;
    let by_ids = embed(&c, &base, json!({"model": MODEL, "input": [7592, 2088]})).await;
    let by_ids_batch = embed(
        &c,
        &base,
        json!({"model": MODEL, "input": [[7592, 2088], [7592]]}),
    )
    .await;
    let t = vector(&by_text["data"][0]["embedding"]);
    assert!(cosine(&t, &vector(&by_ids["data"][0]["embedding"])) > 0.99999);
    assert!(cosine(&t, &vector(&by_ids_batch["data"][0]["embedding"])) > 0.99999);
    assert_eq!(by_ids_batch["data"].as_array().unwrap().len(), 2);
}

/// 200 concurrent requests: each gets the vector its text gets alone, and
/// the batch-size metric shows that they were batched.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_requests_are_correct_and_batched() {
    let (addr, _stop) = start_on_own_thread(|c| c.models.guards = vec![]);
    let base = format!("http://{addr}");
    let c = reqwest::Client::new();
    let texts: Vec<String> = (0..20)
        .map(|i| {
            format!(
                "Sentence number {i} is about topic {} and nothing else.",
                i * 7 % 13
            )
        })
        .collect();
    let mut alone = Vec::new();
    for t in &texts {
        alone.push(vector(
            &embed(&c, &base, json!({"model": MODEL, "input": t})).await["data"][0]["embedding"],
        ));
    }
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (c, base, text) = (c.clone(), base.clone(), texts[i % texts.len()].clone());
            tokio::spawn(async move { (i, embed(&c, &base, json!({"model": MODEL, "input": text})).await) })
        })
        .collect();
    for t in tasks {
        let (i, resp) = t.await.unwrap();
        let got = vector(&resp["data"][0]["embedding"]);
        let cos = cosine(&got, &alone[i % texts.len()]);
        assert!(cos > 0.99999, "request {i}: cosine {cos} against its solo vector");
    }
    let metrics = get_text(&base, "/metrics").await;
    let label = format!("model=\"{MODEL}\"");
    let batches = metric_value(&metrics, "ragd_batch_size_count", &label).unwrap();
    let seqs = metric_value(&metrics, "ragd_batch_size_sum", &label).unwrap();
    assert_eq!(seqs, 220.0, "every request reached the model once");
    assert!(
        batches < seqs,
        "no batching: {batches} batches for {seqs} sequences"
    );
    eprintln!("220 sequences in {batches} batches (mean {:.1})", seqs / batches);
}

/// A full queue answers 429 with `Retry-After` and the error JSON; the
/// requests it admitted still succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_answers_429_with_retry_after() {
    let (addr, _stop) = start_on_own_thread(|c| {
        c.models.guards = vec![];
        c.models.queue_capacity = 1;
    });
    let base = format!("http://{addr}");
    let c = reqwest::Client::new();
    let inputs: Vec<String> = (0..32)
        .map(|i| format!("passage {i} about load shedding"))
        .collect();
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let (c, base, inputs) = (c.clone(), base.clone(), inputs.clone());
            tokio::spawn(async move {
                let r = c
                    .post(format!("{base}/v1/embeddings"))
                    .json(&json!({"model": MODEL, "input": inputs}))
                    .send()
                    .await
                    .unwrap();
                let retry_after = r
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_string());
                (r.status().as_u16(), retry_after, r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let (mut ok, mut shed) = (0, 0);
    for t in tasks {
        let (status, retry_after, body) = t.await.unwrap();
        match status {
            200 => {
                ok += 1;
                assert_eq!(body["data"].as_array().unwrap().len(), 32);
            }
            429 => {
                shed += 1;
                assert_eq!(retry_after.as_deref(), Some("1"));
                assert_eq!(body["error"]["code"], "overloaded", "{body}");
            }
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert!(ok >= 1 && shed >= 1, "{ok} answered, {shed} shed");
    eprintln!("queue capacity 1, 40 concurrent requests: {ok} answered, {shed} got 429");
}
