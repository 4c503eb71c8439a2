//! The report of one concurrency level of `ragd bench generate`: its JSON
//! (the fields scripts parse) and the table of all levels.

use serde_json::{json, Value};

use crate::http::ErrorTally;

/// The report of one concurrency level.
#[derive(Debug, Clone)]
pub struct LevelReport {
    pub concurrency: usize,
    pub requests: usize,
    /// Failed requests, per cause.
    pub errors: ErrorTally,
    /// Requests sent again after their connection closed before the
    /// response (they succeeded, so they are no errors).
    pub retries: u64,
    pub wall_s: f64,
    pub output_tokens: u64,
    pub prompt_tokens_mean: Option<f64>,
    /// Mean prompt tokens the server's prefix cache held (when it says).
    pub cached_tokens_mean: Option<f64>,
    pub ttft_ms: [Option<f64>; 2],
    pub itl_ms: [Option<f64>; 2],
    pub e2e_ms_p50: Option<f64>,
}

impl LevelReport {
    pub fn tokens_per_second(&self) -> f64 {
        self.output_tokens as f64 / self.wall_s
    }

    pub fn to_json(&self) -> Value {
        json!({
            "concurrency": self.concurrency,
            "requests": self.requests,
            "errors": self.errors.total(),
            "first_error": self.errors.first(),
            "errors_by_cause": self.errors.to_json(),
            "retries": self.retries,
            "wall_s": self.wall_s,
            "output_tokens": self.output_tokens,
            "output_tokens_per_s": self.tokens_per_second(),
            "prompt_tokens_mean": self.prompt_tokens_mean,
            "cached_tokens_mean": self.cached_tokens_mean,
            "ttft_p50_ms": self.ttft_ms[0],
            "ttft_p99_ms": self.ttft_ms[1],
            "itl_p50_ms": self.itl_ms[0],
            "itl_p99_ms": self.itl_ms[1],
            "e2e_p50_ms": self.e2e_ms_p50,
        })
    }
}

fn fmt_ms(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{v:.1}"))
}

pub fn print_table(label: &str, levels: &[LevelReport]) {
    println!(
        "{:<14} {:>4} {:>5} {:>4} {:>8} {:>9} {:>10} {:>10} {:>9} {:>9} {:>10}",
        "server",
        "conc",
        "reqs",
        "errs",
        "wall_s",
        "tok/s",
        "ttft_p50",
        "ttft_p99",
        "itl_p50",
        "itl_p99",
        "e2e_p50"
    );
    for l in levels {
        println!(
            "{:<14} {:>4} {:>5} {:>4} {:>8.2} {:>9.1} {:>10} {:>10} {:>9} {:>9} {:>10}",
            label,
            l.concurrency,
            l.requests,
            l.errors.total(),
            l.wall_s,
            l.tokens_per_second(),
            fmt_ms(l.ttft_ms[0]),
            fmt_ms(l.ttft_ms[1]),
            fmt_ms(l.itl_ms[0]),
            fmt_ms(l.itl_ms[1]),
            fmt_ms(l.e2e_ms_p50),
        );
    }
    println!("(latencies in ms; tok/s = completion tokens of all requests / wall time)");
    for l in levels {
        for line in l.errors.lines() {
            println!("concurrency {}: errors {line}", l.concurrency);
        }
        if l.retries > 0 {
            println!(
                "concurrency {}: {} requests retried (connection closed before the response)",
                l.concurrency, l.retries
            );
        }
    }
}
