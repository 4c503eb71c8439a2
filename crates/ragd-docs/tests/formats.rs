//! Each format of the committed test corpus (`tests/fixtures/formats`,
//! made by its `make.py`) gives its sentence, without the markup around it.

use std::path::PathBuf;

fn corpus(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/formats")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_format_gives_its_sentence() {
    for (name, sentence, absent) in [
        (
            "lighthouse.pdf",
            "The lighthouse keeper feeds the gulls every Thursday at dawn.",
            "/Helvetica",
        ),
        (
            "museum.html",
            "The museum opens its glass gallery at nine in the morning.",
            "console.log",
        ),
        (
            "garden.md",
            "Tomatoes in the greenhouse need water twice a day in July.",
            "# ",
        ),
        (
            "handbook.docx",
            "New employees receive a brass key to the archive room.",
            "w:t",
        ),
    ] {
        let docs = ragd_docs::extract(name, &corpus(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(docs.len(), 1, "{name}");
        let text = &docs[0].text;
        assert!(text.contains(sentence), "{name}: {text:?}");
        assert!(!text.contains(absent), "{name}: {text:?}");
        assert_eq!(
            (docs[0].id.as_str(), &docs[0].metadata["source"]),
            (name, &serde_json::json!(name))
        );
    }
}

#[test]
fn a_damaged_file_is_an_error_not_a_panic() {
    for name in ["x.pdf", "x.docx"] {
        assert!(
            ragd_docs::extract(name, b"this is not that format").is_err(),
            "{name}"
        );
    }
    let mut pdf = corpus("lighthouse.pdf");
    pdf.truncate(pdf.len() / 2);
    let _ = ragd_docs::extract("half.pdf", &pdf);
}
