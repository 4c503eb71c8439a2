//! A small WebDriver client (the W3C protocol: JSON over HTTP) for the
//! browser tests, on the blocking `reqwest` client the suite already has:
//! starts `chromedriver` on a free loopback port and drives headless
//! Chromium through it. Needs Debian's `chromium` and `chromium-driver`
//! (`apt-get install chromium chromium-driver`): without them the tests
//! fail with that hint; they do not skip.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

/// The key W3C WebDriver uses for element references.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// `name` on PATH, or a failure that says how to install it.
fn on_path(name: &str) -> PathBuf {
    crate::tool_on_path(
        name,
        "install `apt-get install chromium chromium-driver`; the browser tests need it and do not skip",
    )
}

/// A running `chromedriver`, stopped when dropped.
pub struct ChromeDriver {
    child: Child,
    url: String,
    http: reqwest::blocking::Client,
}

impl ChromeDriver {
    /// Starts `chromedriver` on a free loopback port and waits until it
    /// answers.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(on_path("chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("HTTP client");
        let driver = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http,
        };
        let start = Instant::now();
        loop {
            let ready = (driver.http.get(format!("{}/status", driver.url)).send())
                .ok()
                .and_then(|r| r.json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                return driver;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A new headless Chromium session with a `width` x `height` window.
    pub fn session(&self, width: u32, height: u32) -> Browser {
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-extensions".into(),
            "--no-first-run".into(),
            "--hide-scrollbars".into(),
            format!("--window-size={width},{height}"),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": on_path("chromium"), "args": args},
        }}});
        let r = (self.http.post(format!("{}/session", self.url)).json(&caps).send())
            .expect("new WebDriver session");
        let body: Value = r.json().expect("session JSON");
        let id = body["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {body}"))
            .to_string();
        Browser {
            http: self.http.clone(),
            base: format!("{}/session/{id}", self.url),
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session, closed when dropped.
pub struct Browser {
    http: reqwest::blocking::Client,
    base: String,
}

/// An element of the page.
pub struct Element<'a> {
    browser: &'a Browser,
    id: String,
}

impl Browser {
    /// Runs one WebDriver command; the `value` of its answer, or the
    /// WebDriver error as text.
    fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let r = req.send().map_err(|e| e.to_string())?;
        let ok = r.status().is_success();
        let v: Value = r.json().map_err(|e| e.to_string())?;
        match ok {
            true => Ok(v["value"].clone()),
            false => Err(format!("{}: {}", v["value"]["error"], v["value"]["message"])),
        }
    }

    fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, Some(body))
            .unwrap_or_else(|e| panic!("WebDriver POST {path}: {e}"))
    }

    pub fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url}));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the
    /// page; what it returns.
    pub fn exec(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": args}))
    }

    /// Runs an async `script` (a function body that calls the last
    /// argument with its result).
    pub fn exec_async(&self, script: &str, args: Value) -> Value {
        self.post("/execute/async", json!({"script": script, "args": args}))
    }

    /// The elements matching the CSS selector `css` now.
    pub fn find_all(&self, css: &str) -> Vec<Element<'_>> {
        let found = self.post("/elements", json!({"using": "css selector", "value": css}));
        (found.as_array().into_iter().flatten())
            .map(|e| Element {
                browser: self,
                id: e[ELEMENT].as_str().expect("element id").to_string(),
            })
            .collect()
    }

    /// The first element matching `css`, waiting up to 10 s for it.
    pub fn find(&self, css: &str) -> Element<'_> {
        self.wait(&format!("an element `{css}`"), Duration::from_secs(10), || {
            self.find_all(css).into_iter().next()
        })
    }

    /// Calls `check` until it gives `Some` or `timeout` passes (then fails,
    /// naming `what`).
    pub fn wait<T>(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(start.elapsed() < timeout, "waited {timeout:?} for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether a JavaScript dialog (alert, confirm) is open.
    pub fn alert_open(&self) -> bool {
        self.command(reqwest::Method::GET, "/alert/text", None).is_ok()
    }

    /// Lays pages out for a `width` x `height` screen (a phone's), below
    /// the smallest window Chromium opens (Chrome DevTools Protocol).
    pub fn emulate_screen(&self, width: u32, height: u32) {
        let params = json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": true});
        self.post(
            "/goog/cdp/execute",
            json!({"cmd": "Emulation.setDeviceMetricsOverride", "params": params}),
        );
    }

    /// The page as a PNG.
    pub fn screenshot(&self) -> Vec<u8> {
        let shot = (self.command(reqwest::Method::GET, "/screenshot", None))
            .unwrap_or_else(|e| panic!("screenshot: {e}"));
        base64::engine::general_purpose::STANDARD
            .decode(shot.as_str().expect("base64 PNG"))
            .expect("PNG bytes")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.command(reqwest::Method::DELETE, "", None);
    }
}

impl Element<'_> {
    fn path(&self, rest: &str) -> String {
        format!("/element/{}{rest}", self.id)
    }

    pub fn click(&self) {
        self.browser.post(&self.path("/click"), json!({}));
    }

    /// Types `text` into the element (a file input takes a file's path).
    pub fn send_keys(&self, text: &str) {
        self.browser.post(&self.path("/value"), json!({"text": text}));
    }

    pub fn clear(&self) {
        self.browser.post(&self.path("/clear"), json!({}));
    }

    /// Its rendered text.
    pub fn text(&self) -> String {
        let v = (self
            .browser
            .command(reqwest::Method::GET, &self.path("/text"), None))
        .unwrap_or_else(|e| panic!("element text: {e}"));
        v.as_str().unwrap_or_default().to_string()
    }

    /// The DOM property `name` (`value`, `checked`, `disabled`, `hidden`).
    pub fn property(&self, name: &str) -> Value {
        (self.browser.command(
            reqwest::Method::GET,
            &self.path(&format!("/property/{name}")),
            None,
        ))
        .unwrap_or_else(|e| panic!("property {name}: {e}"))
    }

    pub fn displayed(&self) -> bool {
        (self
            .browser
            .command(reqwest::Method::GET, &self.path("/displayed"), None))
        .is_ok_and(|v| v == true)
    }

    /// The element as an argument of [`Browser::exec`].
    pub fn arg(&self) -> Value {
        json!({ ELEMENT: self.id })
    }
}
