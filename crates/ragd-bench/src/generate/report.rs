//! The report of one concurrency level of `ragd bench generate`: its JSON
//! (the fields scripts parse) and the table of all levels.

use serde_json::{json, Value};

/// The report of one concurrency level.
#[derive(Debug, Clone)]
pub struct LevelReport {
    pub concurrency: usize,
    pub requests: usize,
    pub errors: usize,
    pub first_error: Option<String>,
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
            "errors": self.errors,
            "first_error": self.first_error,
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
            l.errors,
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
        if let Some(e) = &l.first_error {
            println!("concurrency {}: first error: {e}", l.concurrency);
        }
    }
}
