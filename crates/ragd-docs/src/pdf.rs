//! PDF: the text layer, through `pdf-extract` (a scanned page without one
//! gives no text; OCR is out of scope).

use crate::DocError;

pub fn text(bytes: &[u8]) -> Result<String, DocError> {
    // pdf-extract may panic on malformed files: a bad upload must be an
    // error for that file, not a crashed request.
    std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem(bytes))
        .map_err(|_| DocError::Parse("the PDF could not be parsed".into()))?
        .map_err(|e| DocError::Parse(format!("PDF: {e}")))
}
