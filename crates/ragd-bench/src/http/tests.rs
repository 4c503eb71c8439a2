//! Connections and retries against a server that drops connections.

use std::sync::atomic::Ordering;

use serde_json::json;

use super::test_server::{endpoint, json_response, start};
use super::*;

#[tokio::test]
async fn a_connection_closed_before_the_response_is_retried_once() {
    let (addr, accepted) = start(vec![None, Some(json_response(r#"{"ok":true}"#))]).await;
    let (answer, retries) = post_json(&endpoint(addr), "/x", &json!({})).await.unwrap();
    assert_eq!((answer["ok"].as_bool(), retries), (Some(true), 1));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_server_that_keeps_closing_fails_with_that_cause_after_one_retry() {
    let (addr, accepted) = start(vec![None]).await;
    let e = post_json(&endpoint(addr), "/x", &json!({})).await.unwrap_err();
    assert_eq!(e.cause, ErrorCause::ClosedBeforeResponse, "{e}");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    let mut tally = ErrorTally::default();
    tally.add(&e);
    assert_eq!(
        (tally.total(), tally.summary(), tally.refused),
        (1, "closed_before_response: 1".into(), false)
    );
}

#[tokio::test]
async fn every_request_opens_its_own_connection() {
    // The server closes each connection after its answer although it said
    // keep-alive: a pooled client would send the next request on a dead one.
    let (addr, accepted) = start(vec![Some(json_response(r#"{"ok":true}"#))]).await;
    let endpoint = endpoint(addr);
    for _ in 0..3 {
        let (_, retries) = post_json(&endpoint, "/x", &json!({})).await.unwrap();
        assert_eq!(retries, 0);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn refusals_and_refused_connections_are_named() {
    let busy = "HTTP/1.1 429 Too Many Requests\r\ncontent-length: 4\r\n\r\nfull".to_string();
    let (addr, _) = start(vec![Some(busy)]).await;
    let e = post_json(&endpoint(addr), "/x", &json!({})).await.unwrap_err();
    assert_eq!((e.cause, e.detail.as_str()), (ErrorCause::Status(429), "full"));
    assert!(e.cause.is_refusal());

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let e = post_json(&endpoint(closed), "/x", &json!({})).await.unwrap_err();
    assert_eq!(e.cause, ErrorCause::Connect, "{e}");
}
