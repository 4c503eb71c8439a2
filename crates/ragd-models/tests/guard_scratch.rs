use std::time::Instant;
use candle_core::Device;
use ragd_core::{Classifier, TextTokenizer, TokenBatch};
use ragd_models::guard::NanoGuard;

#[test]
fn scratch() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/cache/nanoguard");
    let t = Instant::now();
    let (mut g, tok) = NanoGuard::load(&dir, "ng", &Device::Cpu).unwrap();
    eprintln!("load {:?}", t.elapsed());
    let seq: Vec<u32> = (0..100).map(|i| 8188 * (i == 0) as u32 + (i as u32 % 7000)).collect();
    for n in [1usize, 1, 4, 8, 16] {
        let b = TokenBatch::from_sequences(&vec![seq.clone(); n]);
        let t = Instant::now();
        g.classify(&b).unwrap();
        eprintln!("batch {n}: {:?} ({:?}/seq)", t.elapsed(), t.elapsed() / n as u32);
    }
    for n in [10_000usize, 100_000, 1_000_000, 5_000_000] {
        for s in [" ".repeat(n), format!("{}x", " ".repeat(n)), format!("{}\n", " ".repeat(n)), "a".repeat(n), "!".repeat(n)] {
            let t = Instant::now();
            let r = tok.encode(&s);
            eprintln!("ws {n}: {:?} {:?}", r.map(|v| v.len()).map_err(|e| e.to_string()), t.elapsed());
        }
    }
}
