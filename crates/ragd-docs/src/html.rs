//! HTML: the text a reader sees in the page's main content. `<main>` or
//! `<article>` when the page has one, else `<body>`; scripts, styles,
//! navigation, headers, footers and forms are left out; block elements
//! become line breaks.

use scraper::{ElementRef, Html, Node, Selector};

/// Elements whose content is never main text.
const SKIPPED: [&str; 11] = [
    "script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form", "svg", "head",
];
/// Elements that start a new line.
const BLOCKS: [&str; 22] = [
    "p",
    "div",
    "br",
    "li",
    "ul",
    "ol",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "tr",
    "table",
    "section",
    "article",
    "main",
    "blockquote",
    "pre",
    "dd",
    "dt",
    "figcaption",
];

pub fn text(html: &str) -> String {
    let doc = Html::parse_document(html);
    let root = ["main", "article", "body"]
        .iter()
        .find_map(|tag| Selector::parse(tag).ok().and_then(|s| doc.select(&s).next()))
        .unwrap_or_else(|| doc.root_element());
    let mut out = String::new();
    walk(root, &mut out);
    out
}

fn walk(element: ElementRef<'_>, out: &mut String) {
    for child in element.children() {
        match child.value() {
            Node::Text(t) => {
                let words: Vec<&str> = t.split_whitespace().collect();
                if words.is_empty() {
                    continue;
                }
                if t.starts_with(char::is_whitespace) && !out.ends_with(['\n', ' ']) && !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(&words.join(" "));
                if t.ends_with(char::is_whitespace) {
                    out.push(' ');
                }
            }
            Node::Element(e) => {
                let name = e.name();
                if SKIPPED.contains(&name) {
                    continue;
                }
                let Some(child) = ElementRef::wrap(child) else {
                    continue;
                };
                let block = BLOCKS.contains(&name);
                if block {
                    out.push('\n');
                }
                walk(child, out);
                if block {
                    out.push('\n');
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_main_text_without_markup_or_chrome() {
        let page = r#"<html><head><title>t</title><style>p{}</style></head><body>
            <nav>Home | About</nav><main><h1>Opening hours</h1>
            <p>The museum opens at <b>nine</b> in the morning.</p><script>var x = 1;</script>
            <ul><li>Monday</li><li>Tuesday</li></ul></main><footer>(c) 2026</footer></body></html>"#;
        let text = super::text(page);
        assert!(text.contains("Opening hours"), "{text}");
        assert!(
            text.contains("The museum opens at nine in the morning."),
            "{text}"
        );
        assert!(text.contains("Monday\n"), "{text}");
        for absent in ["Home", "var x", "(c) 2026", "p{}"] {
            assert!(!text.contains(absent), "{absent} in {text}");
        }
    }
}
