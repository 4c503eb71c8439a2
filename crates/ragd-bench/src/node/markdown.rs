//! The Markdown tables `ragd bench node` prints on standard output.

use std::fmt::Write;

use super::report::{NodeReport, TextLoad};
use super::sweep::Sweep;
use super::system::NodeInfo;

const GIB: f64 = (1u64 << 30) as f64;

fn opt(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
}

fn times(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{v:.2}x"))
}

/// The whole report.
pub fn render(r: &NodeReport) -> String {
    let mut out = String::from("# ragd bench node\n\n");
    node_table(&mut out, &r.node, r);
    texts_table(&mut out, r);
    let s = &r.settings;
    let _ = writeln!(
        out,
        "## Generation (/v1/completions, streamed): ~{} prompt tokens, {} new tokens, {} requests per client\n",
        s.prompt_tokens, s.max_tokens, s.requests_per_client
    );
    out.push_str(
        "| server | clients | requests | errors | output tok/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms | KV cache peak | running peak |\n\
         |---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    let sweeps: Vec<&Sweep> = std::iter::once(&r.generation).chain(&r.compare).collect();
    for sweep in &sweeps {
        sweep_rows(&mut out, sweep);
    }
    out.push('\n');
    for sweep in &sweeps {
        sweep_notes(&mut out, sweep);
    }
    ratio_table(&mut out, r);
    out
}

fn node_table(out: &mut String, n: &NodeInfo, r: &NodeReport) {
    let cpu = format!(
        "{} ({} logical CPUs, {} physical cores, {} available to the bench)",
        n.cpu_model.as_deref().unwrap_or("unknown"),
        n.logical_cpus,
        n.physical_cores.map_or_else(|| "?".into(), |c| c.to_string()),
        n.available_cpus
    );
    let gib = |b: Option<u64>| opt(b.map(|b| b as f64 / GIB), 1);
    let memory = format!(
        "{} GiB ({} GiB available)",
        gib(n.memory_total_bytes),
        gib(n.memory_available_bytes)
    );
    let gpu = if n.gpus.is_empty() {
        format!("none ({})", n.gpu_note.as_deref().unwrap_or("not found"))
    } else {
        let each = n.gpus.iter().map(|g| {
            let mem = g
                .memory_mib
                .map_or_else(|| "?".into(), |m| format!("{:.0}", m as f64 / 1024.0));
            format!("{}, {mem} GiB, driver {}", g.name, g.driver)
        });
        each.collect::<Vec<_>>().join("; ")
    };
    let model =
        |m: &Option<super::server::ServedModel>| m.as_ref().map_or("-".into(), |m| format!("`{}`", m.id));
    let m = &r.models;
    let _ = write!(
        out,
        "## Node\n\n| | |\n|---|---|\n| CPU | {cpu} |\n| Memory | {memory} |\n| GPU | {gpu} |\n\
         | Server | {} |\n| Models | generator {}, embedder {}, guard {} |\n\n",
        r.url,
        model(&m.generator),
        model(&m.embedder),
        model(&m.guard)
    );
}

fn texts_table(out: &mut String, r: &NodeReport) {
    out.push_str(
        "## Embeddings and guard\n\n\
         | endpoint | texts | ~tokens/text | batch | clients | per second | errors |\n\
         |---|--:|--:|--:|--:|--:|--:|\n",
    );
    let mut notes = Vec::new();
    let row = |out: &mut String, notes: &mut Vec<String>, what: &str, unit: &str, l: &TextLoad| {
        let t = &l.result;
        let _ = writeln!(
            out,
            "| {what} | {} | {} | {} | {} | {:.1} {unit} | {} |",
            t.texts,
            l.approx_tokens,
            l.batch,
            l.concurrency,
            t.texts_per_second(),
            t.errors.total()
        );
        notes.extend(t.errors.lines().map(|e| format!("{what}: {e}")));
    };
    match &r.embeddings {
        Ok(loads) => {
            for l in loads {
                row(
                    out,
                    &mut notes,
                    &format!("/v1/embeddings, {}", l.kind),
                    "embeddings/s",
                    l,
                );
            }
        }
        Err(why) => notes.push(format!("embeddings: skipped: {why}")),
    }
    match &r.guard {
        Ok(l) => row(
            out,
            &mut notes,
            "/v1/moderations, one window per text",
            "windows/s",
            l,
        ),
        Err(why) => notes.push(format!("guard: skipped: {why}")),
    }
    out.push('\n');
    for n in &notes {
        let _ = writeln!(out, "- {n}");
    }
    if !notes.is_empty() {
        out.push('\n');
    }
}

fn sweep_rows(out: &mut String, sweep: &Sweep) {
    for l in &sweep.levels {
        let g = &l.load;
        let kv = l.kv.as_ref().map_or_else(
            || "-".into(),
            |kv| match (kv.peak_blocks, kv.capacity_blocks) {
                (Some(u), Some(c)) => format!("{:.1}% ({u}/{c} blocks)", kv.peak_fraction * 100.0),
                _ => format!("{:.1}%", kv.peak_fraction * 100.0),
            },
        );
        let running = l.kv.as_ref().and_then(|kv| kv.peak_running);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.1} | {} | {} | {} | {} | {kv} | {} |",
            sweep.label,
            g.concurrency,
            g.requests,
            g.errors.total(),
            g.tokens_per_second(),
            opt(g.ttft_ms[0], 1),
            opt(g.ttft_ms[1], 1),
            opt(g.itl_ms[0], 1),
            opt(g.itl_ms[1], 1),
            running.map_or_else(|| "-".into(), |r| r.to_string()),
        );
    }
}

fn sweep_notes(out: &mut String, sweep: &Sweep) {
    let label = &sweep.label;
    if let Some(q) = sweep.queue_capacity {
        let _ = writeln!(
            out,
            "- {label}: queue capacity {q} waiting requests (`ragd_queue_capacity`)"
        );
    }
    if let Some(c) = sweep.refused_at {
        let _ = writeln!(
            out,
            "- {label}: refused requests (429/503) at {c} clients; not run: {:?}",
            sweep.skipped
        );
    }
    for l in &sweep.levels {
        let c = l.load.concurrency;
        for e in l.load.errors.lines() {
            let _ = writeln!(out, "- {label} x{c}: error {e}");
        }
        if l.load.retries > 0 {
            let _ = writeln!(
                out,
                "- {label} x{c}: {} requests sent again after their connection closed before the response",
                l.load.retries
            );
        }
    }
}

fn ratio_table(out: &mut String, r: &NodeReport) {
    let Some(peer) = &r.compare else {
        return;
    };
    let _ = write!(
        out,
        "\n## {} / {}\n\n| clients | output tok/s | TTFT p50 | TTFT p99 | ITL p50 | ITL p99 |\n|--:|--:|--:|--:|--:|--:|\n",
        r.generation.label, peer.label
    );
    for q in r.ratios() {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            q.concurrency,
            times(q.tokens_per_second),
            times(q.ttft_p50),
            times(q.ttft_p99),
            times(q.itl_p50),
            times(q.itl_p99)
        );
    }
    let _ = writeln!(
        out,
        "\n(tok/s above 1x and latencies below 1x: {} is faster)",
        r.generation.label
    );
}
