//! Sending one request: a connection closed before any of the response
//! arrived is retried once on a new one; an error status is a failure
//! carrying the server's words.

use serde_json::Value;

use super::{Endpoint, ErrorCause, RequestError};

/// Retries of a request whose connection closed before its response.
const RETRIES: u32 = 1;

/// A successful response and the retries it took.
pub struct Sent {
    pub response: reqwest::Response,
    pub retries: u32,
}

/// Sends the request `build` makes (called again for a retry). A request
/// whose connection closed (or was reset) before any byte of the response
/// came is sent once more on a new connection: no answer means the server
/// did no work it could report, and a stale or dropped connection says
/// nothing about its speed. Anything else fails with its cause.
pub async fn send(build: impl Fn() -> reqwest::RequestBuilder) -> Result<Sent, RequestError> {
    let mut retries = 0;
    let response = loop {
        match build().send().await {
            Ok(r) => break r,
            Err(e) => {
                let cause = ErrorCause::of_send(&e);
                if cause != ErrorCause::ClosedBeforeResponse || retries == RETRIES {
                    return Err(RequestError::from_reqwest(cause, &e));
                }
                retries += 1;
            }
        }
    };
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        let detail = text.chars().take(300).collect::<String>();
        return Err(RequestError::new(ErrorCause::Status(status.as_u16()), detail));
    }
    Ok(Sent { response, retries })
}

/// `POST path` with a JSON body through [`send`]; the JSON answer and the
/// retries it took.
pub async fn post_json(endpoint: &Endpoint, path: &str, body: &Value) -> Result<(Value, u32), RequestError> {
    let sent = send(|| endpoint.post(path).json(body)).await?;
    let value = sent
        .response
        .json()
        .await
        .map_err(|e| RequestError::from_reqwest(ErrorCause::of_body(&e), &e))?;
    Ok((value, sent.retries))
}
