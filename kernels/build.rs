//! With the `cuda` feature: compiles `cuda/*.cu` to PTX with nvcc (from
//! `$CUDA_HOME/bin`, else `PATH`) for `CUDA_COMPUTE_CAP` (default 80: the
//! PTX is JIT-compiled for newer GPUs by the driver). Without it: nothing.

use std::path::PathBuf;
use std::process::Command;

const SOURCES: &[&str] = &["paged_attention"];

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=CUDA_COMPUTE_CAP");
    println!("cargo::rerun-if-env-changed=CUDA_HOME");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let nvcc = std::env::var_os("CUDA_HOME")
        .map(|home| PathBuf::from(home).join("bin/nvcc"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("nvcc"));
    let cap = std::env::var("CUDA_COMPUTE_CAP")
        .ok()
        .map(|c| c.trim().replace('.', ""))
        .unwrap_or_else(|| "80".to_string());
    for name in SOURCES {
        let src = format!("cuda/{name}.cu");
        println!("cargo::rerun-if-changed={src}");
        let ptx = out_dir.join(format!("{name}.ptx"));
        let status = Command::new(&nvcc)
            .args(["--ptx", "-O3", "-std=c++17"])
            .arg(format!("-arch=compute_{cap}"))
            .arg(&src)
            .arg("-o")
            .arg(&ptx)
            .status()
            .unwrap_or_else(|e| {
                panic!(
                    "running {} failed ({e}): install the CUDA toolkit (scripts/check-cuda sets one up)",
                    nvcc.display()
                )
            });
        assert!(status.success(), "nvcc failed on {src}");
    }
}
