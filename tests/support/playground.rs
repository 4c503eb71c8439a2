//! Steps through the web playground in a browser, shared by the browser
//! tests and the screenshot run: open a view, create a collection, upload
//! a file, ask a question and wait for its answer.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::webdriver::Browser;

/// WebDriver's Enter key.
pub const ENTER: &str = "\u{E007}";

/// Long enough for an answer of the small test generator on a busy machine.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// A browser on the playground of the server at `addr`.
pub struct Page<'a> {
    pub b: &'a Browser,
    pub base: String,
}

impl<'a> Page<'a> {
    /// Loads the playground at `view` (`chat`, `kb`, `guard`, `status`)
    /// and waits until its scripts have filled the model picker.
    pub fn open(b: &'a Browser, addr: SocketAddr, view: &str) -> Self {
        let page = Self {
            b,
            base: format!("http://{addr}"),
        };
        b.goto(&format!("{}/#{view}", page.base));
        page.wait_js("the model picker to fill", "return document.querySelectorAll('#chat-model option').length > 0 || document.querySelector('#chat-note').textContent !== ''");
        page
    }

    /// Waits up to 20 s until `script` returns true.
    pub fn wait_js(&self, what: &str, script: &str) {
        self.wait_js_for(what, script, Duration::from_secs(20));
    }

    pub fn wait_js_for(&self, what: &str, script: &str, timeout: Duration) {
        self.b.wait(what, timeout, || {
            (self.b.exec(script, json!([])) == true).then_some(())
        });
    }

    /// The text of the first element matching `css` (empty when none).
    pub fn text(&self, css: &str) -> String {
        let v = self.b.exec(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';",
            json!([css]),
        );
        v.as_str().unwrap_or_default().to_string()
    }

    pub fn tab(&self, view: &str) {
        self.b.find(&format!("#tab-{view}")).click();
        self.wait_js(
            "the view",
            &format!("return !document.querySelector('#view-{view}').hidden"),
        );
    }

    /// Sets a form field's value (replacing what it holds).
    pub fn set(&self, css: &str, value: &str) {
        let e = self.b.find(css);
        e.clear();
        e.send_keys(value);
    }

    /// Picks the option `value` of the select `css`.
    pub fn choose(&self, css: &str, value: &str) {
        self.b.find(&format!("{css} option[value=\"{value}\"]")).click();
    }

    /// Creates the collection `name` in the knowledge-base view and waits
    /// until it is the selected one.
    pub fn create_collection(&self, name: &str) {
        self.tab("kb");
        self.set("#kb-name", name);
        self.b.find("#kb-create button[type=submit]").click();
        self.b.wait("the new collection", Duration::from_secs(20), || {
            (self.text("#kb-selected-name") == name && self.text("#kb-note").contains("Created"))
                .then_some(())
        });
    }

    /// Uploads `file` through the file input of the selected collection
    /// and waits for the outcome; returns the upload note.
    pub fn upload(&self, file: &Path) -> String {
        self.b
            .find("#kb-files")
            .send_keys(file.to_str().expect("UTF-8 path"));
        self.b.wait("the upload to finish", Duration::from_secs(60), || {
            let note = self.text("#kb-upload-note");
            (!note.is_empty() && !note.starts_with("Uploading")).then_some(note)
        })
    }

    /// Searches the selected collection for `query` and waits for hits.
    pub fn search(&self, query: &str) {
        self.set("#kb-query", query);
        self.b.find("#kb-search button[type=submit]").click();
        self.wait_js(
            "search hits",
            "return document.querySelectorAll('#kb-hits .hit').length > 0",
        );
    }

    /// Drops a file `name` holding `text` on the upload area (a drop
    /// event as a drag from the desktop fires it) and waits for the
    /// outcome; returns the upload note.
    pub fn drop_file(&self, name: &str, text: &str) -> String {
        self.b.exec(
            "const data = new DataTransfer();
             data.items.add(new File([arguments[1]], arguments[0], {type: 'text/plain'}));
             const area = document.querySelector('#kb-drop');
             for (const type of ['dragenter', 'dragover', 'drop']) {
               area.dispatchEvent(new DragEvent(type, {dataTransfer: data, bubbles: true, cancelable: true}));
             }",
            json!([name, text]),
        );
        self.upload_outcome()
    }

    fn upload_outcome(&self) -> String {
        self.b.wait("the upload to finish", Duration::from_secs(60), || {
            let note = self.text("#kb-upload-note");
            (!note.is_empty() && !note.starts_with("Uploading")).then_some(note)
        })
    }

    /// Sends `question` from the chat box (with Enter) and waits until the
    /// answer is no longer streaming; returns the answer's status.
    pub fn ask(&self, question: &str) -> String {
        self.tab("chat");
        let before = self.answers();
        let input = self.b.find("#chat-input");
        input.send_keys(question);
        input.send_keys(ENTER);
        self.b.wait("the answer to start", Duration::from_secs(10), || {
            (self.answers() > before).then_some(())
        });
        self.b.wait("the answer to end", ANSWER_TIMEOUT, || {
            let status = self.last_answer_status();
            (status != "streaming").then_some(status)
        })
    }

    /// How many assistant messages the conversation shows.
    pub fn answers(&self) -> usize {
        self.b.find_all("#chat-log .msg.assistant").len()
    }

    pub fn last_answer_status(&self) -> String {
        let v = self.b.exec(
            "const m = [...document.querySelectorAll('#chat-log .msg.assistant')].pop(); return m ? m.dataset.status : '';",
            json!([]),
        );
        v.as_str().unwrap_or_default().to_string()
    }

    /// The chat's generation settings.
    pub fn settings(&self, temperature: f32, max_tokens: u32) {
        self.set("#chat-temperature", &temperature.to_string());
        self.set("#chat-max-tokens", &max_tokens.to_string());
    }

    /// Turns RAG on with `collection`.
    pub fn rag(&self, collection: &str) {
        self.tab("chat");
        if self.b.find("#rag-on").property("checked") != true {
            self.b.find("#rag-on").click();
        }
        self.b
            .wait("the collection in the picker", Duration::from_secs(10), || {
                (!self
                    .b
                    .find_all(&format!("#rag-collection option[value=\"{collection}\"]"))
                    .is_empty())
                .then_some(())
            });
        self.choose("#rag-collection", collection);
    }

    /// The conversation as the tab keeps it (sessionStorage).
    pub fn stored_conversation(&self) -> Value {
        let text = self
            .b
            .exec("return sessionStorage.getItem('ragd.conversation');", json!([]));
        serde_json::from_str(text.as_str().unwrap_or("null")).expect("stored conversation JSON")
    }
}
