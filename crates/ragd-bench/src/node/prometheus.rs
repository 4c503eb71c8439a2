//! Reading gauges from a Prometheus text exposition (`GET /metrics`).

/// The value of gauge `name` in `text`: of the sample labelled
/// `model="<model>"` when there is one, else the sum of all its samples;
/// `None` when `text` has no such gauge.
pub fn gauge(text: &str, name: &str, model: Option<&str>) -> Option<f64> {
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => match r.split_once('}') {
                Some((labels, v)) => (labels, v),
                None => continue,
            },
            None if rest.starts_with(' ') => ("", rest),
            None => continue,
        };
        let Some(value) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        else {
            continue;
        };
        samples.push((labels, value));
    }
    if let Some(m) = model {
        let wanted = format!("model=\"{m}\"");
        if let Some((_, v)) = samples.iter().find(|(l, _)| l.split(',').any(|kv| kv == wanted)) {
            return Some(*v);
        }
    }
    (!samples.is_empty()).then(|| samples.iter().map(|(_, v)| v).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP ragd_kv_blocks_used KV cache blocks in use\n\
        # TYPE ragd_kv_blocks_used gauge\n\
        ragd_kv_blocks_used{model=\"smollm2\"} 12\n\
        ragd_kv_blocks_used{model=\"other\"} 3\n\
        ragd_kv_blocks_used_total 99\n\
        ragd_kv_blocks_capacity{model=\"smollm2\"} 2048\n\
        llamacpp:kv_cache_usage_ratio 0.25 1700000000\n";

    #[test]
    fn reads_a_models_gauge_else_the_sum() {
        assert_eq!(gauge(TEXT, "ragd_kv_blocks_used", Some("smollm2")), Some(12.0));
        assert_eq!(gauge(TEXT, "ragd_kv_blocks_used", Some("absent")), Some(15.0));
        assert_eq!(gauge(TEXT, "ragd_kv_blocks_used", None), Some(15.0));
        assert_eq!(gauge(TEXT, "ragd_kv_blocks_capacity", None), Some(2048.0));
        assert_eq!(gauge(TEXT, "llamacpp:kv_cache_usage_ratio", None), Some(0.25));
        assert_eq!(gauge(TEXT, "ragd_queue_capacity", None), None);
    }
}
