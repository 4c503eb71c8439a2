//! Streamed answers: an incremental Server-Sent Events parser and what one
//! streamed chunk of an OpenAI-compatible server says.

use anyhow::Context;
use serde_json::Value;

/// One event of a `text/event-stream` body, as OpenAI-compatible servers send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseEvent {
    /// The payload of a `data:` line (a JSON object for OpenAI servers).
    Data(String),
    /// `data: [DONE]`: the end of the stream.
    Done,
}

/// Incremental Server-Sent Events parser: bytes in, `data:` payloads out.
/// Lines may be split anywhere across chunks (also inside a UTF-8
/// character). Comments, `event:`/`id:` fields and blank lines are skipped;
/// each `data:` line is its own event (OpenAI servers never split one JSON
/// object across several `data:` lines).
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
}

impl SseParser {
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut start = 0;
        while let Some(nl) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let line = &self.buf[start..start + nl];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(payload) = line.strip_prefix(b"data:") {
                let payload = payload.strip_prefix(b" ").unwrap_or(payload);
                let text = String::from_utf8_lossy(payload).trim_end().to_string();
                if text == "[DONE]" {
                    events.push(SseEvent::Done);
                } else if !text.is_empty() {
                    events.push(SseEvent::Data(text));
                }
            }
            start += nl + 1;
        }
        self.buf.drain(..start);
        events
    }

    /// The unterminated last line, as an event, at the end of the body.
    pub fn finish(&mut self) -> Vec<SseEvent> {
        if self.buf.is_empty() {
            return Vec::new();
        }
        self.push(b"\n")
    }
}

/// What one streamed chunk says: its text (completions' `choices[0].text`,
/// or chat's `choices[0].delta.content`), the usage if it carries one, and
/// an error if the server sent one in-stream.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ChunkInfo {
    pub text: String,
    pub completion_tokens: Option<u64>,
    pub prompt_tokens: Option<u64>,
    /// `usage.prompt_tokens_details.cached_tokens`: prompt tokens the
    /// server's prefix cache held.
    pub cached_tokens: Option<u64>,
    pub error: Option<String>,
}

pub fn parse_chunk(payload: &str) -> anyhow::Result<ChunkInfo> {
    let v: Value = serde_json::from_str(payload).with_context(|| format!("bad SSE payload: {payload}"))?;
    let mut info = ChunkInfo::default();
    if let Some(err) = v.get("error") {
        info.error = Some(
            err.get("message")
                .and_then(Value::as_str)
                .unwrap_or(&err.to_string())
                .to_string(),
        );
    }
    if let Some(c) = v["choices"].as_array().and_then(|c| c.first()) {
        let text = c["text"].as_str().or_else(|| c["delta"]["content"].as_str());
        info.text = text.unwrap_or_default().to_string();
    }
    let usage = &v["usage"];
    info.completion_tokens = usage["completion_tokens"].as_u64();
    info.prompt_tokens = usage["prompt_tokens"].as_u64();
    info.cached_tokens = usage["prompt_tokens_details"]["cached_tokens"].as_u64();
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(s: &str) -> SseEvent {
        SseEvent::Data(s.to_string())
    }

    #[test]
    fn sse_lines_split_across_chunks() {
        let mut p = SseParser::default();
        assert_eq!(p.push(b"data: {\"a\""), vec![]);
        assert_eq!(p.push(b":1}\n\nda"), vec![data("{\"a\":1}")]);
        assert_eq!(
            p.push(b"ta: {\"b\":2}\r\n\r\n: keep-alive\n"),
            vec![data("{\"b\":2}")]
        );
        assert_eq!(
            p.push(b"event: x\ndata:{\"c\":3}\n\ndata: [DONE]\n\n"),
            vec![data("{\"c\":3}"), SseEvent::Done]
        );
    }

    #[test]
    fn sse_split_inside_utf8_and_unterminated_end() {
        let text = "data: {\"t\":\"é\"}\n".as_bytes();
        let mut p = SseParser::default();
        let cut = text.iter().position(|&b| b == 0xc3).unwrap() + 1;
        assert_eq!(p.push(&text[..cut]), vec![]);
        assert_eq!(p.push(&text[cut..]), vec![data("{\"t\":\"é\"}")]);
        assert_eq!(p.push(b"data: [DONE]"), vec![]);
        assert_eq!(p.finish(), vec![SseEvent::Done]);
        assert_eq!(p.finish(), vec![]);
    }

    #[test]
    fn chunk_text_usage_and_errors() {
        let c = parse_chunk(r#"{"choices":[{"text":"Hello","index":0,"finish_reason":null}]}"#).unwrap();
        assert_eq!((c.text.as_str(), c.completion_tokens), ("Hello", None));
        let chat = parse_chunk(r#"{"choices":[{"delta":{"content":" world"}}]}"#).unwrap();
        assert_eq!(chat.text, " world");
        // The usage chunk of `stream_options.include_usage` has empty choices.
        let u =
            parse_chunk(r#"{"choices":[],"usage":{"prompt_tokens":130,"completion_tokens":128}}"#).unwrap();
        assert_eq!(
            (u.text.as_str(), u.completion_tokens, u.prompt_tokens),
            ("", Some(128), Some(130))
        );
        let e = parse_chunk(r#"{"error":{"message":"boom","type":"server_error"}}"#).unwrap();
        assert_eq!(e.error.as_deref(), Some("boom"));
        assert!(parse_chunk("not json").is_err());
    }
}
