//! Text out of the files people put in knowledge bases, for `ragd ingest`
//! and `POST /v1/collections/{name}/files`: PDF (its text layer), HTML
//! (the main text, not the markup), Markdown, DOCX, plain text and JSONL
//! (one document per line). The format is chosen by the file name's
//! extension. Parsing is synchronous and works on the bytes given.

mod docx;
mod error;
mod html;
mod jsonl;
mod markdown;
mod pdf;

pub use error::DocError;

/// One document found in a file.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtractedDoc {
    pub id: String,
    pub text: String,
    /// `source` (the file name) and `format`, plus a JSONL line's own.
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// The formats read, by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Pdf,
    Html,
    Markdown,
    Docx,
    Text,
    Jsonl,
}

impl Format {
    /// The format of a file called `name`; `None` when it is not read.
    pub fn of(name: &str) -> Option<Self> {
        let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
        Some(match ext.as_str() {
            "pdf" => Self::Pdf,
            "html" | "htm" | "xhtml" => Self::Html,
            "md" | "markdown" => Self::Markdown,
            "docx" => Self::Docx,
            "txt" | "text" => Self::Text,
            "jsonl" => Self::Jsonl,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Pdf => "pdf",
            Self::Html => "html",
            Self::Markdown => "markdown",
            Self::Docx => "docx",
            Self::Text => "text",
            Self::Jsonl => "jsonl",
        }
    }
}

/// The extensions read, for messages.
pub const EXTENSIONS: &str = ".pdf, .html, .htm, .md, .docx, .txt, .jsonl";

/// The documents of the file `name` with contents `bytes`: one per file,
/// except JSONL (one per line). A file with no text gives none.
pub fn extract(name: &str, bytes: &[u8]) -> Result<Vec<ExtractedDoc>, DocError> {
    let format = Format::of(name).ok_or_else(|| DocError::Unsupported(name.to_string()))?;
    if format == Format::Jsonl {
        return jsonl::documents(name, utf8(bytes)?);
    }
    let text = match format {
        Format::Pdf => pdf::text(bytes)?,
        Format::Html => html::text(utf8(bytes)?),
        Format::Markdown => markdown::text(utf8(bytes)?),
        Format::Docx => docx::text(bytes)?,
        Format::Text | Format::Jsonl => utf8(bytes)?.to_string(),
    };
    let text = tidy(&text);
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let metadata = serde_json::Map::from_iter([
        ("source".to_string(), serde_json::json!(name)),
        ("format".to_string(), serde_json::json!(format.name())),
    ]);
    Ok(vec![ExtractedDoc {
        id: name.to_string(),
        text,
        metadata,
    }])
}

fn utf8(bytes: &[u8]) -> Result<&str, DocError> {
    std::str::from_utf8(bytes).map_err(|e| DocError::Parse(format!("not UTF-8 text ({e})")))
}

/// Trailing spaces off each line, runs of blank lines down to one, and
/// no blank lines at either end.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines().map(str::trim_end) {
        if line.trim().is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_come_from_extensions() {
        assert_eq!(Format::of("a/B.PDF"), Some(Format::Pdf));
        assert_eq!(Format::of("x.htm"), Some(Format::Html));
        assert_eq!(Format::of("notes"), None);
        assert_eq!(Format::of("x.exe"), None);
        assert!(matches!(extract("x.exe", b""), Err(DocError::Unsupported(_))));
    }

    #[test]
    fn plain_text_is_tidied_and_empty_files_give_nothing() {
        let docs = extract("a.txt", b"  one  \n\n\n\ntwo\n").unwrap();
        assert_eq!(docs[0].text, "  one\n\ntwo");
        assert_eq!(docs[0].metadata["format"], "text");
        assert!(extract("b.txt", b" \n ").unwrap().is_empty());
        assert!(matches!(extract("c.txt", &[0xff, 0xfe]), Err(DocError::Parse(_))));
    }
}
