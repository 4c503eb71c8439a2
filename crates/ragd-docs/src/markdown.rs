//! Markdown: its text without the markup (headings, emphasis, links keep
//! their words; code keeps its text).

use pulldown_cmark::{Event, Parser, TagEnd};

pub fn text(markdown: &str) -> String {
    let mut out = String::new();
    for event in Parser::new(markdown) {
        match event {
            Event::Text(t) | Event::Code(t) => out.push_str(&t),
            Event::SoftBreak => out.push(' '),
            Event::HardBreak => out.push('\n'),
            Event::End(TagEnd::Paragraph | TagEnd::Heading(_) | TagEnd::Item | TagEnd::CodeBlock) => {
                out.push('\n')
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn markup_goes_words_stay() {
        let text =
            super::text("# Title\n\nSome *emphasis* and a [link](http://x).\n\n- one\n- two\n\n`code`");
        assert_eq!(text, "Title\nSome emphasis and a link.\none\ntwo\ncode\n");
    }
}
