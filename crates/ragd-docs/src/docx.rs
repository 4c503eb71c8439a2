//! DOCX: the paragraphs of `word/document.xml` inside the zip (text runs
//! `<w:t>`, tabs, line breaks; one line per paragraph).

use std::io::Read;

use quick_xml::events::Event;
use quick_xml::Reader;

use crate::DocError;

/// Largest `document.xml` read (a zip bomb stops here).
const MAX_XML_BYTES: u64 = 64 << 20;

pub fn text(bytes: &[u8]) -> Result<String, DocError> {
    let bad = |what: String| DocError::Parse(format!("DOCX: {what}"));
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| bad(e.to_string()))?;
    let mut xml = String::new();
    zip.by_name("word/document.xml")
        .map_err(|e| bad(format!("no word/document.xml ({e})")))?
        .take(MAX_XML_BYTES)
        .read_to_string(&mut xml)
        .map_err(|e| bad(e.to_string()))?;
    let mut reader = Reader::from_str(&xml);
    let (mut out, mut in_text) = (String::new(), false);
    loop {
        match reader.read_event().map_err(|e| bad(e.to_string()))? {
            Event::Start(e) if e.name().as_ref() == b"w:t" => in_text = true,
            Event::End(e) if e.name().as_ref() == b"w:t" => in_text = false,
            Event::End(e) if e.name().as_ref() == b"w:p" => out.push('\n'),
            Event::Empty(e) if e.name().as_ref() == b"w:tab" => out.push('\t'),
            Event::Empty(e) if e.name().as_ref() == b"w:br" => out.push('\n'),
            Event::Text(t) if in_text => {
                out.push_str(&t.decode().map_err(|e| bad(e.to_string()))?);
            }
            Event::GeneralRef(r) if in_text => {
                let name = r.decode().map_err(|e| bad(e.to_string()))?;
                out.push_str(match name.as_ref() {
                    "amp" => "&",
                    "lt" => "<",
                    "gt" => ">",
                    "quot" => "\"",
                    "apos" => "'",
                    _ => "",
                });
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}
